// Which payees a refused settleBatch was refused for. The token is called once per payee inside one transaction,
// so a token that refuses one payee (USDC's blacklist) reverts the whole batch, and the revert names no payee: the
// others are never paid while that payee is in their batch. So the rail asks the chain, with calls that send
// nothing and cost no gas (eth_call of settleBatch as the hot wallet): first a payout of the batch's largest amount
// to the gateway's own wallet (if that reverts too, the token is paused, refuses the wallet, or the wallet is
// short: the batch failed as a whole, and no payee is blamed), then the batch's halves, and the halves of those that
// revert, down to the payees whose payout alone reverts. Such a payee is refused `rejected`: the same payout to the
// gateway's own wallet goes, so it is the destination the token refuses.
import { type Address, BaseError, encodeFunctionData, type Hex, keccak256, stringToHex } from "viem";
import type { PayoutRefused, RailFailureCode } from "../../core/index.ts";
import { revenueSplitterAbi } from "./abi.generated.ts";
import { nodeUnreachable, shortMessage } from "./errors.ts";
import type { EvmRailState } from "./rail-state.ts";
import { revertText } from "./reverts.ts";

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
  const probe = keccak256(stringToHex(`probe:${params.reference}`));
  const simulate = (from: number, to: number, payee?: Address) =>
    simulateSettle(state, params.splitter, probe, {
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
    const [from, to] = range;
    const answer = await simulate(from, to);
    if (answer.kind === "unreachable") return [];
    if (answer.kind === "goes") continue;
    if (to - from === 1) {
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

type Simulated = { kind: "goes" } | { kind: "reverts"; message: string } | { kind: "unreachable" };

/** settleBatch run by the node as the hot wallet would send it, and not sent. */
async function simulateSettle(
  state: EvmRailState,
  splitter: Address,
  ref: Hex,
  batch: { payees: readonly Address[]; amounts: readonly bigint[] },
): Promise<Simulated> {
  try {
    await state.params.publicClient.call({
      account: state.account.address,
      to: splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "settleBatch",
        args: [state.params.token.address, [...batch.payees], [...batch.amounts], ref],
      }),
    });
    return { kind: "goes" };
  } catch (error) {
    // As gas estimation is read (send-journal.ts): the node out of reach said nothing; anything else it answered
    // is the call reverting.
    if (!(error instanceof BaseError)) throw error;
    const revert = revertText(error);
    if (revert === null && nodeUnreachable(error)) return { kind: "unreachable" };
    return { kind: "reverts", message: revert ?? shortMessage(error) };
  }
}
