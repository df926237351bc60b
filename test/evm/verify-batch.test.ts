// The paywall's batched simulation (gateway/x402/simulate-batch.ts) against the one-payment simulation it replaces
// (verify.ts checkChain), on the Hardhat chain (EDR, eth_call with a state override): the same answer for each
// payment of a batch — a good one passes, a forged signature, a balance too small, a nonce the token has used and
// a signature that cannot be one are refused with the same codes — and the simulator's code is its source's.
import { readFileSync } from "node:fs";
import solc from "solc";
import { type Account, createPublicClient, custom, getAddress, type Hex, toHex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { assets } from "../../core/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import {
  createSimulationBatcher,
  simulateAll,
  simulatorRuntimeCode,
} from "../../gateway/x402/simulate-batch.ts";
import {
  checkChain,
  type Eip3009Authorization,
  transferArgs,
  transferTypedData,
  vrsOf,
} from "../../gateway/x402/verify.ts";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
let chain: X402Chain;
const domain = { name: "", version: "" };
const payer = () => gw.chain.accounts[7]!;
const stranger = () => gw.chain.accounts[8]!;
let counter = 0;

beforeAll(async () => {
  gw = await startGateway();
  const token = getAddress(gw.chain.contracts.testUsd);
  chain = {
    rail: "evm",
    chainId: gw.chain.chain.id,
    publicClient: gw.chain.publicClient,
    token,
    asset: assets.USDC,
    hotWallet: getAddress(toHex(0xb0b, { size: 20 })),
    receiptTimeoutMs: 60_000,
  };
  domain.name = await gw.chain.publicClient.readContract({
    address: token,
    abi: testUsdAbi,
    functionName: "name",
  });
  domain.version = await gw.chain.publicClient.readContract({
    address: token,
    abi: testUsdAbi,
    functionName: "version",
  });
  await gw.send(gw.chain.accounts[0]!, {
    address: token,
    abi: testUsdAbi,
    functionName: "mint",
    args: [payer().address, 1_000_000n],
  });
});
afterAll(async () => {
  await gw?.app.close();
});

async function signed(
  options: { value?: bigint; signer?: Account; nonce?: Hex; validAfter?: bigint; validBefore?: bigint } = {},
) {
  counter += 1;
  const nowS = BigInt(Math.floor(Date.now() / 1000));
  const authorization: Eip3009Authorization = {
    from: payer().address,
    to: chain.hotWallet,
    value: options.value ?? 1_000n,
    validAfter: options.validAfter ?? nowS - 600n,
    validBefore: options.validBefore ?? nowS + 600n,
    nonce: options.nonce ?? toHex(BigInt(Date.now()) * 1000n + BigInt(counter), { size: 32 }),
  };
  const signature = await (options.signer ?? payer()).signTypedData!(
    transferTypedData(chain, domain, authorization),
  );
  return { authorization, signature };
}

describe("batched simulation", () => {
  it("answers each payment of one eth_call as its own simulation does", async () => {
    const used = await signed();
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "transferWithAuthorization",
      args: [...transferArgs(used.authorization, vrsOf(used.signature)!)],
    } as never);
    const good = await signed();
    const cases = [
      good,
      good, // the same twice: each probe against the same state, as two separate simulations
      await signed({ signer: stranger() }),
      await signed({ value: 10_000_000n }),
      used,
      { ...(await signed()), signature: `0x${"00".repeat(65)}` as Hex },
      await signed({ value: 5n }),
    ];
    const held = await gw.chain.publicClient.readContract({
      address: chain.token,
      abi: testUsdAbi,
      functionName: "balanceOf",
      args: [payer().address],
    });
    const latest = await gw.chain.publicClient.getBlockNumber({ cacheTime: 0 });
    const batch = await simulateAll(chain, cases);
    expect(batch.map((b) => b.taken)).toEqual([true, true, false, false, false, false, true]);
    // Each answer carries the payer's balance before its transfer; a call the simulator cannot read (no 65-byte
    // signature: nothing is sent for it) has none.
    // With it, the block the call ran in: the latest, or the one after it (a node may run an eth_call as the next
    // block), never earlier, so that a payment mined in the latest block is counted as not shown (claims-batch.ts).
    const reading = { amount: held, atBlock: batch[0]!.balance!.atBlock };
    expect(reading.atBlock === latest || reading.atBlock === latest + 1n, String(reading.atBlock)).toBe(true);
    expect(batch.map((b) => b.balance)).toEqual([reading, reading, reading, reading, reading, null, reading]);
    const alone = await Promise.all(cases.map((c) => checkChain(chain, c.authorization, c.signature)));
    expect(alone.map((r) => r.ok)).toEqual(batch.map((b) => b.taken));
    const batcher = createSimulationBatcher();
    const batched = await Promise.all(cases.map((c) => batcher(chain, c.authorization, c.signature)));
    const refusalOf = (r: (typeof batched)[number]) => (r.ok ? null : r.refusal);
    expect(batched.map(refusalOf)).toEqual(alone.map(refusalOf));
    expect(batched.map(refusalOf)).toEqual([
      null,
      null,
      "invalid_exact_evm_transaction_simulation_failed",
      "insufficient_funds",
      "invalid_exact_evm_nonce_already_used",
      "invalid_exact_evm_transaction_simulation_failed",
      null,
    ]);
    expect(batched[0]).toEqual({ ok: true, balance: reading, atBlock: reading.atBlock });
  });

  it("says why a payment the batch refused from reads, never a reverting eth_call (a second of stack traces on EDR)", async () => {
    const used = await signed();
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "transferWithAuthorization",
      args: [...transferArgs(used.authorization, vrsOf(used.signature)!)],
    } as never);
    // The same chain through a client that counts the calls the node refused.
    let refusedCalls = 0;
    const counting: X402Chain = {
      ...chain,
      publicClient: createPublicClient({
        chain: gw.chain.publicClient.chain,
        transport: custom({
          async request(args) {
            try {
              return await gw.chain.publicClient.request(args as never);
            } catch (error) {
              refusedCalls += 1;
              throw error;
            }
          },
        }),
      }),
    };
    // The refusals reads explain (a bad signature never gets here: it is refused before simulating), the window
    // shut by the chain's clock among them (the gateway's own clock found it open: the chain's time runs apart).
    const chainTime = (await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp;
    const cases = [
      await signed({ value: 10_000_000n }),
      used,
      await signed({ validBefore: chainTime }),
      await signed({ validAfter: chainTime + 3_600n }),
    ];
    const batcher = createSimulationBatcher();
    const refused = await Promise.all(cases.map((c) => batcher(counting, c.authorization, c.signature)));
    expect(refused.map((r) => (r.ok ? null : r.refusal))).toEqual([
      "insufficient_funds",
      "invalid_exact_evm_nonce_already_used",
      "invalid_exact_evm_payload_authorization_valid_before",
      "invalid_exact_evm_payload_authorization_valid_after",
    ]);
    expect(refusedCalls).toBe(0);
  });

  it("runs the simulator compiled from X402Simulator.sol", () => {
    const source = readFileSync(new URL("../../gateway/x402/X402Simulator.sol", import.meta.url), "utf8");
    const output = JSON.parse(
      solc.compile(
        JSON.stringify({
          language: "Solidity",
          sources: { "X402Simulator.sol": { content: source } },
          settings: {
            optimizer: { enabled: true, runs: 200 },
            evmVersion: "cancun",
            outputSelection: { "*": { "*": ["evm.deployedBytecode.object"] } },
          },
        }),
      ),
    );
    const compiled = output.contracts["X402Simulator.sol"].X402Simulator.evm.deployedBytecode.object;
    expect(simulatorRuntimeCode).toBe(`0x${compiled}`);
  });
});
