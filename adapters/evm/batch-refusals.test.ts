// The refused-payee search against a node stand-in that answers settleBatch by the payees it is asked about: which
// payees are blamed, that every call runs at the block the search began at, and that nothing but the token's own
// revert of a payee blames it (a node's error without revert data, a revert for the wallet's balance).
import {
  type Address,
  BaseError,
  decodeFunctionData,
  encodeErrorResult,
  type Hex,
  parseAbi,
  RawContractError,
} from "viem";
import { describe, expect, it } from "vitest";
import { revenueSplitterAbi, testUsdErrorsAbi } from "./abi.generated.ts";
import { refusedPayouts } from "./batch-refusals.ts";
import type { EvmRailState } from "./rail-state.ts";

const wallet = `0x${"77".repeat(20)}` as Address;
const payee = (n: number) => `0x${n.toString(16).padStart(40, "0")}` as Address;
const blacklisted = encodeErrorResult({
  abi: parseAbi(["error Error(string)"]),
  errorName: "Error",
  args: ["Blacklistable: account is blacklisted"],
});

/** A state whose node answers settleBatch with `answer(payees)`: nothing (goes) or an error it throws. */
function stateAnswering(answer: (payees: readonly Address[]) => Error | null) {
  const blocks: (bigint | undefined)[] = [];
  const publicClient = {
    getBlockNumber: async () => 41n,
    call: async (request: { data: Hex; blockNumber?: bigint }) => {
      blocks.push(request.blockNumber);
      const { args } = decodeFunctionData({ abi: revenueSplitterAbi, data: request.data });
      const error = answer(args![1] as readonly Address[]);
      if (error !== null) throw error;
      return { data: "0x" };
    },
  };
  const state = {
    params: { publicClient, token: { address: `0x${"11".repeat(20)}` } },
    account: { address: wallet },
  } as unknown as EvmRailState;
  return { state, blocks };
}

const ask = (state: EvmRailState, payees: Address[]) =>
  refusedPayouts(state, {
    splitter: `0x${"22".repeat(20)}`,
    reference: `0x${"33".repeat(32)}`,
    payees,
    amounts: payees.map((_, i) => 100n + BigInt(i)),
    code: "rejected",
  });

describe("the refused-payee search", () => {
  it("names the payees the token refuses, every call at the block it began at", async () => {
    const bad = new Set([payee(2), payee(4)]);
    const { state, blocks } = stateAnswering((payees) =>
      payees.some((p) => bad.has(p)) ? new RawContractError({ data: blacklisted }) : null,
    );
    const refused = await ask(state, [payee(1), payee(2), payee(3), payee(4), payee(5)]);
    expect(refused.map((r) => r.index)).toEqual([1, 3]);
    expect(refused[0]!.message).toContain("Blacklistable: account is blacklisted");
    expect(blocks.length).toBeGreaterThan(1);
    expect(blocks.every((block) => block === 41n)).toBe(true);
  });

  it("blames nobody further once the node answers without revert data: the payees found by then stay refused", async () => {
    // [0, 2) is asked first: payee 1 is found; then [2, 4) meets a rate limit, which says nothing of its payees.
    const { state } = stateAnswering((payees) => {
      if (payees.includes(payee(3)) || payees.includes(payee(4)))
        return new BaseError("rate limited (-32005)");
      return payees.includes(payee(1)) ? new RawContractError({ data: blacklisted }) : null;
    });
    const refused = await ask(state, [payee(1), payee(2), payee(3), payee(4)]);
    expect(refused.map((r) => r.index)).toEqual([0]);
  });

  it("blames nobody for a payout that alone reverts for the wallet's balance", async () => {
    const short = encodeErrorResult({
      abi: testUsdErrorsAbi,
      errorName: "ERC20InsufficientBalance",
      args: [wallet, 0n, 103n],
    });
    const { state } = stateAnswering((payees) =>
      payees.includes(payee(4)) ? new RawContractError({ data: short }) : null,
    );
    expect(await ask(state, [payee(1), payee(2), payee(3), payee(4)])).toEqual([]);
  });
});
