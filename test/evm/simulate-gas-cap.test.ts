// The batched simulation's gas cap per probe (gateway/x402/X402Simulator.sol, PROBE_GAS_MAX) on the Hardhat chain:
// a token whose transferWithAuthorization burns all the gas it is given, for one payment of a full batch, fails that
// payment alone. Without the cap its probe took 63/64 of the eth_call's gas and the call ran out of gas as a whole
// (EDR: "Transaction ran out of gas"), so no payment of the batch was answered and each went to a simulation of its
// own. The token is a stand-in put at an address with hardhat_setCode; its other transfers cost about what a real
// one does (three fresh storage slots, some 66,000 gas), which the cap lets through.
import solc from "solc";
import { type Address, getAddress, type Hex, toHex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedChain, startEmbeddedChain } from "../../adapters/evm/dev-chain.ts";
import { assets } from "../../core/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import {
  createSimulationBatcher,
  maxSimulationBatch,
  simulateAll,
} from "../../gateway/x402/simulate-batch.ts";
import type { Eip3009Authorization } from "../../gateway/x402/verify.ts";

/** The value whose transfer the stand-in token makes burn all its gas. */
const greedyValue = 666n;
/** The value whose transfer costs more than a probe's cap (twelve fresh slots) but far less than a call's gas. */
const heavyValue = 777n;
/** What GreedyToken says every payer holds: more than any payment here. */
const heldBalance = 1_000_000n;
const greedyTokenSource = `// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;
contract GreedyToken {
    mapping(bytes32 => uint256) private slots;
    function transferWithAuthorization(address from, address to, uint256 value, uint256, uint256, bytes32 nonce,
        uint8, bytes32, bytes32) external {
        if (value == ${greedyValue}) assembly { invalid() }
        if (value == ${heavyValue}) for (uint256 i = 0; i < 12; i++) slots[keccak256(abi.encode(nonce, i))] = 1;
        slots[nonce] = 1;
        slots[keccak256(abi.encode(from, nonce))] = value;
        slots[keccak256(abi.encode(to, nonce))] = value;
    }
    function authorizationState(address, bytes32) external pure returns (bool) { return false; }
    function balanceOf(address) external pure returns (uint256) { return ${heldBalance}; }
}`;

function greedyTokenCode(): Hex {
  const output = JSON.parse(
    solc.compile(
      JSON.stringify({
        language: "Solidity",
        sources: { "GreedyToken.sol": { content: greedyTokenSource } },
        settings: {
          optimizer: { enabled: true, runs: 200 },
          evmVersion: "cancun",
          outputSelection: { "*": { "*": ["evm.deployedBytecode.object"] } },
        },
      }),
    ),
  );
  return `0x${output.contracts["GreedyToken.sol"].GreedyToken.evm.deployedBytecode.object}`;
}

let embedded: EmbeddedChain;
let chain: X402Chain;

beforeAll(async () => {
  embedded = await startEmbeddedChain();
  const token = getAddress(toHex(0x9eed, { size: 20 }));
  await embedded.networkHelpers.setCode(token, greedyTokenCode());
  chain = {
    rail: "evm",
    chainId: embedded.chain.id,
    publicClient: embedded.publicClient,
    token,
    asset: assets.USDC,
    hotWallet: getAddress(toHex(0xb0b, { size: 20 })),
    receiptTimeoutMs: 60_000,
  };
});
afterAll(async () => {
  await embedded?.close();
});

// The stand-in checks no signature: any well-formed one (r and s in range, v 27) is sent.
const signature = `0x${"11".repeat(32)}${"22".repeat(32)}1b` as Hex;
const payment = (i: number, value: bigint) => ({
  authorization: {
    from: getAddress(toHex(0xa000 + i, { size: 20 })) as Address,
    to: chain.hotWallet,
    value,
    validAfter: 0n,
    validBefore: 2n ** 40n,
    nonce: toHex(i + 1, { size: 32 }),
  } satisfies Eip3009Authorization,
  signature,
});

describe("the batched simulation's gas cap per probe", () => {
  it("fails a payment whose token call burns gas alone, not the rest of a full batch", async () => {
    const greedyAt = 1;
    const batch = Array.from({ length: maxSimulationBatch }, (_, i) =>
      payment(i, i === greedyAt ? greedyValue : 1_000n + BigInt(i)),
    );
    const answers = await simulateAll(chain, batch);
    expect(answers.map((s) => s.taken)).toEqual(batch.map((_, i) => i !== greedyAt));
  });

  it("fails only the greedy ones when several are in one batch", async () => {
    const greedy = new Set([0, 10, 11, 40, 63]);
    const batch = Array.from({ length: maxSimulationBatch }, (_, i) =>
      payment(i, greedy.has(i) ? greedyValue : 5_000n + BigInt(i)),
    );
    expect((await simulateAll(chain, batch)).map((s) => s.taken)).toEqual(
      batch.map((_, i) => !greedy.has(i)),
    );
  });

  it("takes a payment whose token call costs more than the cap: refused by its probe, passed simulated alone", async () => {
    const heavy = payment(100, heavyValue);
    expect((await simulateAll(chain, [heavy, payment(101, 1_000n)])).map((s) => s.taken)).toEqual([
      false,
      true,
    ]);
    const batcher = createSimulationBatcher();
    // Taken by the simulation alone, with the balance the batch read beside its probe, and the block it read it at.
    const latest = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
    const taken = await batcher(chain, heavy.authorization, heavy.signature);
    expect(taken).toEqual({
      ok: true,
      balance: { amount: heldBalance, atBlock: expect.any(BigInt) },
      atBlock: expect.any(BigInt),
    });
    const atBlock = taken.ok ? taken.balance!.atBlock : -1n;
    expect(atBlock === latest || atBlock === latest + 1n, String(atBlock)).toBe(true);
    // The batch's block kept for the simulation alone (its state a later one's), not one read beside it.
    expect(taken.ok && taken.atBlock).toBe(atBlock);
  });
});
