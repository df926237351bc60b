// Which payees a refused settleBatch was refused for. The token is called once per payee inside one transaction,
// so a token that refuses one payee (USDC's blacklist) reverts the whole batch, and the revert names no payee: the
// others are never paid while that payee is in their batch. So the rail asks the chain, with calls that send
// nothing and cost no gas (eth_call of settleBatch as the hot wallet): first a payout of the batch's largest amount
// to the gateway's own wallet (if that reverts too, the token is paused, refuses the wallet, or the wallet is
// short: the batch failed as a whole, and no payee is blamed), then the batch's halves, and the halves of those that
// revert, down to the payees whose payout alone reverts. Such a payee is refused `rejected`: the same payout to the
// gateway's own wallet goes, so it is the destination the token refuses.
//
// A payee refused here is failed for good, so nothing but the token's own refusal of it may blame it:
// - every call runs at one block (the latest when the search began): a payout sent meanwhile from the same wallet
//   cannot make a payee's call fail for a balance the control had;
// - only a revert the node returns with its data counts; an error without it (a rate limit, a node's internal error
//   or timeout) stops the search and blames nobody;
// - a payee whose payout alone reverts for the wallet's balance or allowance is not blamed either (nobody is);
// - the search stops past searchBudgetMs, with the payees found by then: a batch's lease (nettingSendLeaseMs) must
//   outlast it.
// A token that refuses a payee with a bare revert (no data), or with an error not in revertAbi, has its payee blamed
// by nobody: the batch fails whole, as before this search (USDC's and TestUSD's refusals carry a reason string).
import { type Address, BaseError, encodeFunctionData, type Hex, keccak256, stringToHex } from "viem";
import type { PayoutRefused, RailFailureCode } from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import type { EvmRailState } from "./rail-state.ts";
import { failureCodeOf, revertText } from "./reverts.ts";

/** The longest a search for refused payees runs; past it, only the payees found by then are refused. */
export const searchBudgetMs = 60_000;

/** A settleBatch refused with these codes reverted on the chain: worth asking which payee it reverted for. */
const revertedCodes: ReadonlySet<RailFailureCode> = new Set([
  "rejected",
  "insufficient_liquidity",
  "unreachable_destination",
]);

export type RefusedPayoutsParams = {
  readonly splitter: Address;
  /** The batch's reference: the calls here use another derived from it, never one a batch is sent under. */
  readonly reference: Hex;
  readonly payees: readonly Address[];
  readonly amounts: readonly bigint[];
  /** How the batch's send was refused: only a revert is looked into (not the node out of reach, nor the gas cap). */
  readonly code: RailFailureCode;
};

/**
 * The payouts refused for their payee alone, by index, in index order; empty when the batch was not refused for
 * any one payee (or the node stopped answering meanwhile: then nothing is said of any payee). At most 2n − 1 calls
 * for n payees (the control, then a halving that stops at the halves that go through).
 */
export async function refusedPayouts(
  state: EvmRailState,
  params: RefusedPayoutsParams,
): Promise<PayoutRefused[]> {
  const { payees, amounts } = params;
  if (!revertedCodes.has(params.code) || payees.length === 0) return [];
  const deadline = Date.now() + searchBudgetMs;
  const probe = keccak256(stringToHex(`probe:${params.reference}`));
  let blockNumber: bigint;
  try {
    blockNumber = await state.params.publicClient.getBlockNumber({ cacheTime: 0 });
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return [];
  }
  const simulate = (from: number, to: number, payee?: Address) =>
    simulateSettle(state, params.splitter, probe, blockNumber, {
      payees: payee === undefined ? payees.slice(from, to) : [payee],
      amounts: amounts.slice(from, to),
    });
  const largestAt = amounts.reduce((at, amount, i) => (amount > amounts[at]! ? i : at), 0);
  const control = await simulate(largestAt, largestAt + 1, state.account.address);
  if (control.kind !== "goes") return [];
  const refused: PayoutRefused[] = [];
  // Ranges [from, to) still to ask about; a range that reverts is halved, a payee alone that reverts is refused. The
  // whole batch reverted already: its halves are the first asked (a payee alone, to hear why).
  const [first, second] = halves(0, payees.length);
  const ranges: Array<[number, number]> = payees.length === 1 ? [[0, 1]] : [second, first];
  for (let range = ranges.pop(); range !== undefined; range = ranges.pop()) {
    // Out of time, or the node stopped answering: the payees found so far are refused (each one's payout alone
    // reverted at this block, after the control went through); the others go back to the queue, and the next batch
    // carries the search on, so that every flush gets further.
    if (Date.now() > deadline) break;
    const [from, to] = range;
    const answer = await simulate(from, to);
    if (answer.kind === "unreachable") break;
    if (answer.kind === "goes") continue;
    if (to - from === 1) {
      // Refused for the wallet's balance or allowance, not for its destination: nobody is blamed.
      if (failureCodeOf(answer.reason) !== "rejected") return [];
      refused.push({
        index: from,
        code: "rejected",
        message: `a payout to ${payees[from]} alone reverts: ${answer.message}`,
      });
      continue;
    }
    const [lower, upper] = halves(from, to);
    ranges.push(upper, lower);
  }
  return refused.sort((a, b) => a.index - b.index);
}

/** [from, to) in two, the first half the smaller when it does not split evenly. */
function halves(from: number, to: number): [[number, number], [number, number]] {
  const middle = from + Math.floor((to - from) / 2);
  return [
    [from, middle],
    [middle, to],
  ];
}

type Simulated =
  | { kind: "goes" }
  | { kind: "reverts"; reason: string; message: string }
  | { kind: "unreachable" };

/** settleBatch run by the node as the hot wallet would send it, and not sent. */
async function simulateSettle(
  state: EvmRailState,
  splitter: Address,
  ref: Hex,
  blockNumber: bigint,
  batch: { payees: readonly Address[]; amounts: readonly bigint[] },
): Promise<Simulated> {
  try {
    await state.params.publicClient.call({
      account: state.account.address,
      blockNumber,
      to: splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "settleBatch",
        args: [state.params.token.address, [...batch.payees], [...batch.amounts], ref],
      }),
    });
    return { kind: "goes" };
  } catch (error) {
    // Only a revert that came with its data is the call reverting; the node out of reach, or an error of the node's
    // own (a rate limit, an internal error), says nothing of the batch.
    if (!(error instanceof BaseError)) throw error;
    const revert = revertText(error);
    if (revert === null) return { kind: "unreachable" };
    return { kind: "reverts", reason: revert, message: revert };
  }
}
