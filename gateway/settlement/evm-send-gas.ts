// The gateway's side of the EVM rail's send-gas pass (adapters/evm send-gas.ts): the gas of each mined transaction of
// the hot wallet that no payment books — the splitter's approve, a payout or a netting batch mined reverted, an
// invoice's authorization submitted, an x402 settlement x402 lost track of — booked as a fee of the rail: its fee
// account (ETH) against its ETH clearing account (what the hot wallet holds), in gwei rounded up as every gas booking
// is, once per transaction (its ledger id derived from the chain and the transaction hash). The evidence names the
// transaction and what it was sent for. The composition root runs a pass periodically (gateway/app/evm.ts); tests
// run one on demand.
//
// A payout's and a netting batch's gas are their outcome's to book (the payment's or refund's native fee, netting's
// batch gas), which the pass cannot take on trust: an attempt that ended failed after its transaction was mined (an
// outcome applied before the chain's), a payout no payment or refund of the gateway holds, never book it. The rail
// hands such a send here with its owner, and the ledger decides: the owner's booking found, it is theirs; none yet,
// and the owner still open (an attempt in flight, a refund pending, a batch sending), it waits for the next pass; none,
// and the owner ended (or there is none), it is booked here — once: an ended owner books nothing after.
//
// x402's sends, never booked twice:
//  - a single settlement (`transfer-auth:`) is booked under x402's own id for its transaction (x402GasId), in the
//    same gwei rounded up, between the same accounts, as x402's settler and reconciliation book it (x402/settle.ts
//    bookGas, on a rail of one confirmation): whichever books first books it, the others find it booked. So a
//    transaction x402 lost (its settler threw after signing, its record failed, its row left `claimed`) is booked
//    all the same; on a rail of more confirmations only here, once final.
//  - a batch (`x402-batch:`) is x402's when the rail handed it the outcome (the rail claims the gas for x402 first:
//    adapters/evm x402-batch.ts, and the pass then never gets here), when an x402 authorization row carries one of
//    the send's transactions (handed over by a process from before that claim), or when one carries the batch's key
//    (x402/batch.ts marks its rows with it before the rail sends: a settler that died before the hand-over, or whose
//    rail threw, leaves rows x402's reconciliation adopts from the send, and books the gas of); only otherwise is it
//    booked here, under this pass's id: x402 splits a batch's gas into shares by invoice, which no id here could
//    match.
import { type Asset, x402BatchSendKeyPrefix } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { credit, type Transfer, type TransferEvidence, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import type { SweepDeps } from "./evm-deposits.ts";
import { SettlementInvariantError } from "./invoices.ts";

/** Gas a rail's transaction cost, as the EVM rail reports it (core FeePaid: gwei of the native asset, rounded up). */
export type GasCost = {
  readonly asset: Asset;
  readonly amount: bigint;
  readonly detail: Readonly<Record<string, string>>;
};

/** A mined send as the EVM rail hands it to the pass's booker (adapters/evm MinedSend, the fields booked). */
export type MinedSendGas = {
  readonly key: string;
  readonly kind: string;
  readonly txHash: string;
  /** Every transaction of the send, the mined one among them. */
  readonly hashes: readonly string[];
  readonly reverted: boolean;
  readonly gas: GasCost;
  /** Whose outcome books its gas when it reaches them ("payment", "netting"); null: nobody's. */
  readonly owner: string | null;
};

/**
 * What the booker did with a send's gas (adapters/evm SendGasBooking): `bookedBy` is kept with the send; `waitingFor`
 * leaves it open, its owner's outcome still to come.
 */
export type SendGasBooking = { booked: boolean; bookedBy: string } | { waitingFor: string };

/** What the EVM rail offers for its send-gas pass. */
export type SendGasFollower = {
  readonly id: string;
  sendGasPass(book: (send: MinedSendGas) => Promise<SendGasBooking>): Promise<{
    booked: readonly MinedSendGas[];
    pending: number;
    neverMined: number;
    failed: number;
  }>;
};

/** A ledger id derived from one transaction of a chain (its hash in any case) for `purpose`: its gas, booked once. */
export function chainTransactionLedgerId(chainId: number, txHash: string, purpose: string): bigint {
  return derivedLedgerId(`${chainId}:${txHash.toLowerCase()}`, purpose);
}

/** The ledger id of an x402 settlement's gas (one transaction, one payment): x402/settle.ts bookGas books under it. */
export function x402GasId(chainId: number, txHash: string): bigint {
  return chainTransactionLedgerId(chainId, txHash, "x402-gas");
}

/**
 * The evidence's detail of an x402 settlement's gas, the same from x402/settle.ts bookGas and from the pass: the
 * ledger compares a repeat's evidence too, so whichever books second must write exactly what the first wrote.
 */
export function x402GasDetail(gasWei: bigint): Record<string, string> {
  return { kind: "x402_gas", wei: gasWei.toString() };
}

/**
 * Books gas the hot wallet paid: from the rail's fee account to its clearing account in the gas's asset, under `id`
 * (idempotent: the same id and amount books nothing more; another amount under it is an invariant broken). `sameAs`,
 * when given, is asked of a booking under `id` with other terms between the same accounts, under the same code:
 * true, it is this one, as an earlier version wrote it, and nothing more is booked.
 */
export async function bookRailGas(
  deps: SweepDeps,
  booking: {
    rail: string;
    gas: GasCost;
    id: bigint;
    evidence: TransferEvidence;
    label: string;
    sameAs?: (booked: Transfer) => boolean;
  },
): Promise<void> {
  const { rail, gas } = booking;
  if (gas.amount === 0n) return;
  const [fees, clearing] = await Promise.all([
    railAccountOpened(deps, { kind: "fee", rail, asset: gas.asset }),
    railAccountOpened(deps, { kind: "clearing", rail, asset: gas.asset }),
  ]);
  const booked = await credit(
    deps.ledger,
    {
      debitAccountId: fees.ledgerAccountId,
      creditAccountId: clearing.ledgerAccountId,
      amount: gas.amount,
      ledger: gas.asset.ledger,
      code: transferCodes.payments.feePaid,
    },
    { id: booking.id, evidence: booking.evidence, label: booking.label },
  );
  if (booked !== "conflict") return;
  if (booking.sameAs !== undefined) {
    const [found] = await deps.ledger.lookupTransfers([booking.id]);
    if (
      found !== undefined &&
      found.debitAccountId === fees.ledgerAccountId &&
      found.creditAccountId === clearing.ledgerAccountId &&
      found.ledger === gas.asset.ledger &&
      found.code === transferCodes.payments.feePaid &&
      booking.sameAs(found)
    )
      return;
  }
  throw new SettlementInvariantError(`${booking.label} is booked with other terms`, {
    details: booking.evidence.reference,
  });
}

/** The exact wei a gas cost came from (its detail; the amount is rounded up to the gwei). */
function weiOf(gas: GasCost): bigint {
  const wei = gas.detail.wei;
  if (wei === undefined) throw new SettlementInvariantError("a mined send's gas came without its wei");
  return BigInt(wei);
}

/**
 * Books one mined send's gas (idempotent: its id is the transaction's), or leaves it to its owner when that booked it
 * or still may, or an x402 batch to x402.
 */
export async function bookSendGas(
  deps: SweepDeps,
  rail: string,
  chainId: number,
  send: MinedSendGas,
): Promise<SendGasBooking> {
  if (send.owner !== null) {
    const owner = await ownerBookingOf(deps, send);
    if (owner.booking === "booked") return { booked: false, bookedBy: owner.by };
    if (owner.booking === "open") return { waitingFor: owner.by };
  }
  const reverted = send.reverted ? " (reverted)" : "";
  if (send.kind === "transfer_authorization") {
    await bookRailGas(deps, {
      rail,
      gas: send.gas,
      id: x402GasId(chainId, send.txHash),
      evidence: { rail, reference: send.txHash, detail: x402GasDetail(weiOf(send.gas)) },
      label: `the gas of x402 settlement ${send.txHash}${reverted}`,
    });
    return { booked: true, bookedBy: "x402_gas" };
  }
  if (send.kind === "x402_batch" && (await x402HoldsBatch(deps.db, chainId, send)))
    return { booked: false, bookedBy: "x402" };
  const label = `the gas of ${send.kind} ${send.txHash}${reverted}`;
  const short: { of: { booked: Transfer; judged: ShortOfL1Fee } | null } = { of: null };
  await bookRailGas(deps, {
    rail,
    gas: send.gas,
    id: chainTransactionLedgerId(chainId, send.txHash, "send-gas"),
    evidence: { rail, reference: send.txHash.toLowerCase(), detail: sendGasDetail(send) },
    label,
    sameAs: (booked) => {
      const judged = bookedBefore(deps, send, booked, label);
      if (typeof judged === "string") short.of = { booked, judged };
      return judged !== false;
    },
  });
  // Booked before from the gas an older pass stored without the OP-stack L1 data fee (or from the receipt by a version
  // before ac492c7, which left it out), repeated from the receipt with it: the rest (in gwei: the receipt's rounded up,
  // less what was booked) booked under an id of its own, once; none when both round up to the same gwei (bookRailGas
  // books no 0). Before, the repeat was refused as a conflict at every pass, the send never done.
  if (short.of !== null) {
    const { booked, judged } = short.of;
    const rest = send.gas.amount - booked.amount;
    await bookRailGas(deps, {
      rail,
      gas: { ...send.gas, amount: rest },
      id: chainTransactionLedgerId(chainId, send.txHash, "send-gas-l1"),
      evidence: {
        rail,
        reference: send.txHash.toLowerCase(),
        detail: { kind: "send_gas_l1", send: send.key, l1Fee: l1FeeOf(send.gas).toString() },
      },
      label: `the L1 data fee of ${send.kind} ${send.txHash}${reverted}`,
    });
    // Said once booked, with what was: before, said before the booking was tried, and as booked when there was none.
    if (judged === "short_by_l1_fee_before_ac492c7")
      deps.logger?.warn(
        {
          send: send.key,
          txHash: send.txHash,
          bookedGwei: booked.amount.toString(),
          bookedWei: booked.evidence?.detail?.wei,
          repeatedGwei: send.gas.amount.toString(),
          repeatedWei: weiOf(send.gas).toString(),
          l1Fee: l1FeeOf(send.gas).toString(),
          l1FeeBookedGwei: rest.toString(),
        },
        rest > 0n
          ? `${label} was booked before without its OP-stack L1 data fee (from the receipt, by a version before ac492c7): the booking stands, and the L1 fee is booked under an id of its own (${rest} gwei)`
          : `${label} was booked before without its OP-stack L1 data fee (from the receipt, by a version before ac492c7): the booking stands, and the L1 fee needs no booking of its own (both round up to the same gwei)`,
      );
  }
  return { booked: true, bookedBy: "send_gas" };
}

/**
 * A booking found for the repeat's exact L1 data fee less (bookedBefore): booked from gas stored without it, or from
 * the receipt by a version before ac492c7 (said once the rest is booked). The caller books the rest.
 */
type ShortOfL1Fee = "short_by_l1_fee" | "short_by_l1_fee_before_ac492c7";

/**
 * Whether `booked`, found under the send's id with other terms, is the send's gas as an earlier version booked it:
 * before 9b9ea96 the evidence of a receipt's gas named its gas used, price and L1 fee too (its wei the whole, the L1 fee
 * in it), and a repeat in today's shape (a crash before the send was marked done, across the upgrade; a send refused so
 * at every pass since) must find it booked, not conflict. Judged exactly where the booking says enough:
 *  - the same send's, for the same wei, in any shape;
 *  - booked from the receipt with its gas used (the old shape): for its wei less its L1 fee, a repeat from the gas an
 *    older pass stored without it (send-gas.ts); naming no L1 fee (before ac492c7, its wei the gas used at its price),
 *    for exactly the L1 fee a repeat from the receipt names less (`short_by_l1_fee_before_ac492c7`); anything else is
 *    a conflict;
 *  - booked from its wei alone (today's shape, or an older stored-gas booking): for exactly the repeat's L1 fee less,
 *    booked from stored gas without it and repeated from the receipt with it (`short_by_l1_fee`: the caller books the
 *    rest); for more, the documented OP-stack case the other way round (booked from the receipt with the L1 fee,
 *    repeated from gas stored without it), which the wei alone cannot check: the booking stands, said as a warning.
 * Before, any larger booking of the send passed, whatever its shape said. Booked for less otherwise, it is a conflict:
 * the ledger would show the wallet holding more than it does.
 */
function bookedBefore(
  deps: SweepDeps,
  send: MinedSendGas,
  booked: Transfer,
  label: string,
): boolean | ShortOfL1Fee {
  const detail = booked.evidence?.detail;
  if (detail?.kind !== "send_gas" || detail.send !== send.key || !isWei(detail.wei)) return false;
  const bookedWei = BigInt(detail.wei);
  const repeatWei = weiOf(send.gas);
  if (bookedWei === repeatWei) return booked.amount === send.gas.amount;
  // Booked for exactly the L1 data fee the repeat names less: the booking left it out (both cases below).
  const repeatL1Fee = l1FeeOf(send.gas);
  const shortByL1Fee = repeatL1Fee > 0n && bookedWei + repeatL1Fee === repeatWei;
  if (detail.gasUsed !== undefined && detail.l1Fee === undefined) {
    // Booked from the receipt before ac492c7, which left an OP-stack chain's L1 data fee out (its wei the gas used at
    // its price alone), and repeated from the receipt with it: judged exactly, by the L1 fee the repeat names, and the
    // rest booked under an id of its own as for the stored gas below (said by the caller, once it is). Before, a
    // conflict at every pass.
    if (!shortByL1Fee) return false;
    if (
      isWei(detail.gasUsed) &&
      isWei(detail.effectiveGasPrice) &&
      bookedWei !== BigInt(detail.gasUsed) * BigInt(detail.effectiveGasPrice)
    )
      return false;
    return "short_by_l1_fee_before_ac492c7";
  }
  if (detail.gasUsed !== undefined) {
    if (!isWei(detail.l1Fee) || bookedWei - BigInt(detail.l1Fee) !== repeatWei) return false;
  } else {
    if (shortByL1Fee) return "short_by_l1_fee";
    if (booked.amount <= send.gas.amount) return false;
  }
  deps.logger?.warn(
    {
      send: send.key,
      txHash: send.txHash,
      bookedGwei: booked.amount.toString(),
      bookedWei: detail.wei,
      repeatedGwei: send.gas.amount.toString(),
      repeatedWei: repeatWei.toString(),
    },
    `${label} was booked before for more than this pass judged it (from the receipt with an OP-stack chain's L1 data fee, against the gas an older version stored without it): the booking stands`,
  );
  return true;
}

function isWei(text: string | undefined): text is string {
  return text !== undefined && /^[0-9]{1,78}$/.test(text);
}

/** The L1 data fee a gas cost names (from an OP-stack receipt); 0 when it names none. */
function l1FeeOf(gas: GasCost): bigint {
  const l1Fee = gas.detail.l1Fee;
  return isWei(l1Fee) ? BigInt(l1Fee) : 0n;
}

/**
 * The evidence's detail of a send's gas the pass books, the same whether the rail read it from the transaction's
 * receipt or, the node having pruned that, from what was stored of it when it was mined (its wei alone): the ledger
 * compares a repeat's evidence, so a booking repeated the other way (a crash between the booking and the send marked
 * done, two passes asking nodes that pruned differently) must write exactly what the first wrote. Before, the
 * receipt's gas used and price were written too, and such a repeat was refused as a conflict at every pass.
 */
function sendGasDetail(
  send: Pick<MinedSendGas, "key" | "kind" | "reverted" | "gas">,
): Record<string, string> {
  return {
    kind: "send_gas",
    send: send.key,
    sent: send.kind,
    reverted: String(send.reverted),
    wei: weiOf(send.gas).toString(),
  };
}

/** The key of a netting batch's settleBatch (adapters/evm splitter-calls.ts): its ref after it. */
const settleKeyPrefix = "settle:";

/**
 * Whether the outcome owning a send's gas booked it (`booked`), may still (`open`), or never will (`ended`: ended
 * without it, or no such owner), and whose it is. The owner's status is read before the ledger: its booking is written
 * before (netting's batch gas) or with (a payment's or refund's native fee, alongside its end) the status that ends it,
 * so an owner read ended has booked all it ever will.
 */
async function ownerBookingOf(
  deps: SweepDeps,
  send: Pick<MinedSendGas, "key" | "kind">,
): Promise<{ booking: "booked" | "open" | "ended"; by: string }> {
  if (send.kind === "settle_batch" && send.key.startsWith(settleKeyPrefix)) {
    const [batch] = await deps.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM netting_batches WHERE ref = $1",
      [send.key.slice(settleKeyPrefix.length)],
    );
    if (batch === undefined) return { booking: "ended", by: "netting" };
    // payments/batch-payouts.ts bookBatchGas's id.
    const booked = await deps.ledger.lookupTransfers([derivedLedgerId(batch.id, "native-fee-paid")]);
    if (booked.length > 0) return { booking: "booked", by: "netting" };
    return { booking: batch.status === "sending" ? "open" : "ended", by: "netting" };
  }
  if (send.kind !== "payout")
    throw new SettlementInvariantError(
      `send ${send.key} (${send.kind}) has an owner the gas booker does not know`,
    );
  // A payout attempt's key is its id: a payment's attempt, or a refund paid out on the rail (its id).
  const [found] = await deps.db.query<{ owner: "payment" | "refund"; open: boolean }>(
    `SELECT 'payment' AS owner, status NOT IN ('succeeded', 'failed') AS open FROM attempts WHERE id = $1
     UNION ALL
     SELECT 'refund', status = 'pending' FROM refunds WHERE id = $1`,
    [send.key],
  );
  const by = found?.owner ?? "payment";
  // The native fee's ids of payments/reservations.ts feeMembers and of payments/refunds.ts feeLegs.
  const booked = await deps.ledger.lookupTransfers([
    derivedLedgerId(send.key, "native-fee-paid"),
    derivedLedgerId(send.key, "refund-native-fee-paid"),
  ]);
  if (booked.length > 0) return { booking: "booked", by };
  return { booking: found?.open === true ? "open" : "ended", by };
}

/**
 * Whether an x402 authorization row on the chain carries one of the batch's transactions, or its key (x402's settler
 * or reconciler books it).
 */
async function x402HoldsBatch(
  db: Db,
  chainId: number,
  send: Pick<MinedSendGas, "key" | "hashes">,
): Promise<boolean> {
  const batchKey = send.key.startsWith(x402BatchSendKeyPrefix)
    ? send.key.slice(x402BatchSendKeyPrefix.length)
    : null;
  const rows = await db.query(
    `SELECT 1 FROM x402_authorizations
     WHERE chain_id = $1 AND (tx_hash = ANY($2::text[]) OR batch_key = $3) LIMIT 1`,
    [chainId, send.hashes.map((hash) => hash.toLowerCase()), batchKey],
  );
  return rows.length > 0;
}

/** One send-gas pass of a rail: every mined send no payment books has its gas booked before the rail marks it done. */
export function sendGasPassOnce(
  deps: SweepDeps,
  rail: SendGasFollower,
  chainId: number,
): ReturnType<SendGasFollower["sendGasPass"]> {
  return rail.sendGasPass((send) => bookSendGas(deps, rail.id, chainId, send));
}
