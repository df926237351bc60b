// Settlement of a verified x402 payment, one transaction per authorization. Each payment becomes an invoice of the
// seller's account on the chain's EVM rail (so its receipt, its events, a refund and its booking are an invoice's:
// credited from the rail's clearing account with the transaction as evidence when the deposit watcher sees it final),
// and the authorization is handed to that rail (`method: "transfer"`), which checks it again and submits
// transferWithAuthorization from the hot wallet through its send journal — the one signer and nonce sequence of that
// wallet. The settler waits for the receipt; the gas the hot wallet paid is booked as the rail's fee, as a sweep's is
// (on a rail of more than one confirmation by the rail's send-gas pass, once the transaction is final: bookGas).
// Behind `X402Settler` so that a batch settler (many authorizations per transaction) can take its place.
//
// An authorization's life (x402_authorizations.status): claimed (before serving or settling) → submitted (its
// transaction sent) → settled (mined: paid, by ours or by a copy of the authorization someone submitted first, which
// paid the hot wallet while ours reverted: spends.ts) | failed (reverted or refused otherwise; a revert stays
// `submitted`, answered `pending`, while the node cannot say whether a copy paid, or while the authorization it left
// unused may still be mined by whoever holds it: spends.ts unspentByOurs). A claim is given back (its row
// deleted) only while nothing was sent — the invoice refused, booking it threw, the rail refused it before sending
// (its invoice kept bound to the payer's nonce, credited if whoever holds the authorization mines it, until a new
// invoice of the same authorization takes the binding over) — so the same authorization may come again and book a
// new invoice. Once a
// transaction is sent, the payer's answer is the chain's: recording and the gas booking are retried and then logged
// (afterSent), never thrown; the invoice is credited by the deposit watcher from the token's log, whatever happens
// here. A row left `submitted` (not mined in time, not taken by the node yet, or its record failed) keeps its
// transaction for reconciliation.
import { type Address, BaseError, type Hex } from "viem";
import { assets, divCeil, feeWeiOf, formatAmount, type Logger, silentLogger } from "../../core/index.ts";
import type { derivedLedgerId } from "../ids/index.ts";
import { credit, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import {
  createInvoice,
  type SettlementDeps,
  submitInvoicePayment,
  x402GasDetail,
  x402GasId,
} from "../settlement/index.ts";
import { nonceUsed, type X402Chain } from "./chains.ts";
import type { X402Refusal } from "./refusals.ts";
import { unspentByOurs } from "./spends.ts";
import { type CreditTarget, record, release } from "./store.ts";
import type { ExactRequirements, VerifiedPayment } from "./verify.ts";

/** What settling one payment came to. `transaction` is the chain's transaction hash. */
export type SettleResult =
  | {
      readonly ok: true;
      readonly transaction: Hex;
      readonly payer: Address;
      readonly network: string;
      readonly amount: bigint;
      /** The seller's invoice that books the payment. */
      readonly invoiceId: string;
    }
  | {
      readonly ok: false;
      readonly refusal: X402Refusal;
      readonly message: string;
      readonly payer: Address;
      /** The transfer may still be mined (sent, or perhaps sent, with no receipt yet): credited if it is. */
      readonly pending?: true;
      /**
       * With `pending`: the transaction sent whose fate is not known yet (no receipt in time, or not taken by the node
       * yet), which a retried settle is answered from (the facilitator's x402 `settlement_pending`).
       */
      readonly inFlight?: Hex;
      /**
       * Refused by the rail before anything was sent, the claim given back: the invoice the rail may have left bound
       * to the payer's nonce, which the deposit watcher credits if whoever holds the authorization mines it (the
       * paywall serves the same payment sent again once it is: scheme.ts servedAsUnsentOwed).
       */
      readonly unsentInvoiceId?: string;
    };

/** A payment verified and claimed (store.claim) for `credit`, settled once. */
export type ClaimedPayment = VerifiedPayment & {
  readonly credit: CreditTarget;
  readonly description: string;
};

export interface X402Settler {
  settle(payment: ClaimedPayment, requirements: ExactRequirements): Promise<SettleResult>;
}

export type SingleSettlerDeps = {
  readonly settlement: SettlementDeps;
  readonly logger?: Logger;
  readonly nowMs?: () => number;
};

/** An invoice for an x402 payment stays open this long past the authorization's validBefore, at least. */
const invoiceExpiryMarginS = 60;
/** …and at most this long in all. */
const invoiceExpirySecondsMax = 86_400;

/** How each refusal of the rail (core's SignedPaymentRefusal, or the invoice's) reads in x402's terms. */
const railRefusalReason: Record<string, X402Refusal> = {
  signature_invalid: "invalid_exact_evm_payload_signature",
  authorization_mismatch: "invalid_payload",
  authorization_expired: "invalid_exact_evm_payload_authorization_valid_before",
  authorization_used: "invalid_exact_evm_nonce_already_used",
  payer_insufficient_funds: "insufficient_funds",
};

/** The rail's refusals after which the authorization can never pay the invoice, which it leaves bound to nothing. */
const neverBound: ReadonlySet<string> = new Set([
  "authorization_used",
  "signature_invalid",
  "invoice_not_payable",
]);

export function createSingleSettler(deps: SingleSettlerDeps): X402Settler {
  const logger = deps.logger ?? silentLogger;
  const nowMs = deps.nowMs ?? Date.now;
  return {
    async settle(payment, requirements) {
      const { chain } = requirements;
      const a = payment.authorization;
      const refused = (
        refusal: X402Refusal,
        message: string,
        pending = false,
        inFlight?: Hex,
      ): SettleResult => ({
        ok: false,
        refusal,
        message,
        ...(pending ? { pending: true as const } : {}),
        ...(inFlight === undefined ? {} : { inFlight }),
        payer: payment.payer,
      });
      const invoiceId = await bookInvoice(deps.settlement, payment, requirements, nowMs, logger);
      if (typeof invoiceId !== "string") return invoiceId;
      let submitted: Awaited<ReturnType<typeof submitInvoicePayment>>;
      try {
        submitted = await submitInvoicePayment(deps.settlement, {
          tenantId: payment.credit.tenantId,
          id: invoiceId,
          fields: {
            method: "transfer",
            from: a.from,
            to: a.to,
            value: a.value.toString(),
            valid_after: a.validAfter.toString(),
            valid_before: a.validBefore.toString(),
            nonce: a.nonce,
            signature: payment.signature,
          },
        });
      } catch (error) {
        // Thrown part-way: the transaction may have been sent, so the claim stays (status `claimed`, bound to the
        // invoice, which the deposit watcher credits if it is mined); the payer hears the outcome is unknown.
        logger.error({ error, invoiceId }, "x402 settlement: submitting the authorization failed");
        return refused(
          "unexpected_settle_error",
          "the payment's fate is unknown; it is credited if it is mined",
          true,
        );
      }
      if (!submitted.ok) {
        // Refused before anything was sent: the claim is given back, the invoice stays open until it expires — bound
        // by the rail to the payer's nonce, unless the authorization can never pay (adapters/evm authorizations.ts
        // bindTransfer): still valid, whoever holds it may submit it until its validBefore, and the deposit watcher
        // credits this invoice if it is mined; the same authorization sent again books a new invoice, which takes the
        // binding over. Before, the rail bound it to nothing: mined later by another, it paid the hot wallet and
        // credited nothing. An authorization the token says is spent (by someone else) is kept, failed, with the
        // block it was seen spent at (its spend's, or later): a balance of the payer read before that block does not
        // show it, and the claims weighed against one count it (claims-batch.ts). Refused as used but not spent on
        // chain (bound to another invoice of the rail, which sent it), or not readable now, the claim stays as it
        // is, holding the payer's balance until it lapses.
        if (submitted.refusal === "authorization_used")
          await afterSent(logger, "recording the nonce spent by another", { invoiceId }, async () => {
            const block = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
            const spent = await nonceUsed(chain, a.from, a.nonce, block);
            if (spent)
              await record(deps.settlement.db, chain, a, {
                status: "failed",
                failure: "authorization_used",
                spentBlock: block,
              });
          });
        else
          await afterSent(logger, "giving the claim back", { invoiceId }, () =>
            release(deps.settlement.db, chain, a, { invoiceId }),
          );
        const answer = refused(
          railRefusalReason[submitted.refusal] ?? "unexpected_settle_error",
          submitted.message,
        );
        // Given back, the invoice may yet be paid by the authorization: the paywall keeps the request owed through it
        // (scheme.ts servedAsUnsentOwed) — but after a refusal that never leaves it bound (the rail's neverPays: the
        // nonce used, the signature refused, the invoice not payable). Another that did not bind it (the terms
        // refused, the binding failed) leaves no row: the paywall reads the rail's binding as it writes one (store.ts
        // markUnsentOwed).
        return neverBound.has(submitted.refusal) ? answer : { ...answer, unsentInvoiceId: invoiceId };
      }
      // Sent: from here on nothing the ledger or the database does may turn the payer's answer into a failure.
      const txHash = submitted.railReference as Hex;
      const context = { txHash, invoiceId };
      await afterSent(logger, "recording the submission", context, () =>
        record(deps.settlement.db, chain, a, { status: "submitted", txHash }),
      );
      if (submitted.taken === false) {
        // Journaled, but the node did not take it now: no receipt can come before the send journal broadcasts it again
        // (the send-gas pass), so none is awaited — the payer would be held the whole receipt timeout to hear pending
        // all the same. The row stays `submitted` with its transaction, for reconciliation to follow.
        logger.warn(
          context,
          "x402 settlement not taken by the node yet; the invoice is credited if it is mined",
        );
        return refused(
          "unexpected_settle_error",
          `transaction ${txHash} was not taken by the node yet; it is broadcast again, and credited if it is mined`,
          true,
          txHash,
        );
      }
      const mined = await receiptOf(chain, txHash);
      if (mined === null) {
        logger.warn(context, "x402 settlement not mined in time; the invoice is credited if it is");
        return refused(
          "unexpected_settle_error",
          `transaction ${txHash} was not mined in time`,
          true,
          txHash,
        );
      }
      // What was mined may be a replacement of what was sent (the send-gas pass raised its fee meanwhile): the record,
      // the gas and the answer are the mined transaction's.
      const minedContext = { txHash: mined.hash, invoiceId };
      // Reverted because a copy of the payer's signed transfer, submitted by someone who saw it (a bot watching the
      // mempool), was mined first: the money came to the hot wallet all the same, and the deposit watcher credits the
      // invoice from that transaction. The payment is settled, by it; ours cost its gas. Reverted for another reason
      // (out of gas, the payer's balance moved first), the authorization may be left unused and open to whoever holds
      // it (spends.ts unspentByOurs).
      const missed = mined.success
        ? null
        : await unspentByOurs(chain, a, { txHash: mined.hash, block: mined.block }, logger);
      if (missed?.status === "unknown" || missed?.status === "open") {
        // Reverted, and the node cannot say now whether a copy paid, or the authorization may still be mined by
        // whoever holds it: never taken for a failure (the payer may have paid, or yet pay). The row stays
        // `submitted`, with the mined transaction, for reconciliation to look again, and the payer hears it pending
        // (sent again once it is mined, it is served); its gas is booked now, under the id reconciliation books it by.
        await afterSent(logger, "recording the revert to look at again", minedContext, () =>
          record(deps.settlement.db, chain, a, {
            status: "submitted",
            txHash: mined.hash,
            ...(missed.status === "open" ? { unusedBlock: missed.unusedAt } : {}),
          }),
        );
        await afterSent(logger, "booking the gas", minedContext, () =>
          bookGas(deps.settlement, chain, mined.hash, mined.gasWei, logger),
        );
        return refused(
          "unexpected_settle_error",
          missed.status === "open"
            ? `transaction ${mined.hash} reverted without spending the authorization, which may still be mined until its validBefore; it is credited if it is`
            : `transaction ${mined.hash} reverted, and whether a copy of the authorization paid could not be read now`,
          true,
        );
      }
      if (missed?.status === "spent" || missed?.status === "lapsed") {
        await afterSent(logger, "recording the revert", minedContext, () =>
          // Its nonce used on other terms by the block read (what makes most of these revert: in ours or before), or,
          // unused, its window shut at our block's time or after.
          record(deps.settlement.db, chain, a, {
            status: "failed",
            txHash: mined.hash,
            failure: "reverted",
            spentBlock: missed.status === "spent" ? missed.block : mined.block,
          }),
        );
        await afterSent(logger, "booking the gas", minedContext, () =>
          bookGas(deps.settlement, chain, mined.hash, mined.gasWei, logger),
        );
        return refused("invalid_transaction_state", `transaction ${mined.hash} reverted`);
      }
      const copy = missed?.status === "copy" ? missed : null;
      const spender = copy ?? { txHash: mined.hash, block: mined.block };
      await afterSent(logger, "recording the settlement", minedContext, () =>
        record(deps.settlement.db, chain, a, {
          status: "settled",
          txHash: mined.hash,
          spentBlock: spender.block,
          ...(copy === null ? {} : { spentTxHash: copy.txHash }),
        }),
      );
      await afterSent(logger, "booking the gas", minedContext, () =>
        bookGas(deps.settlement, chain, mined.hash, mined.gasWei, logger),
      );
      return {
        ok: true,
        transaction: spender.txHash,
        payer: payment.payer,
        network: requirements.network,
        amount: a.value,
        invoiceId,
      };
    },
  };
}

/** How many times bookkeeping after a transaction was sent is tried, and the pause before each retry. */
const afterSentAttemptsMax = 3;
const afterSentRetryPauseMs = 200;

/**
 * Bookkeeping once a transaction was sent (its record, its gas, a request owed): tried `afterSentAttemptsMax` times,
 * and a last failure is logged at error level, never thrown, because the payment happened on the chain whatever the
 * ledger says. A record or a gas booking left undone stays findable for reconciliation: an x402_authorizations row
 * left `claimed`/`submitted` with its transaction, a gas booking whose id is derived from the transaction (booking it
 * again later books it once). True when it was done.
 */
export async function afterSent(
  logger: Logger,
  what: string,
  context: Record<string, unknown>,
  work: () => Promise<unknown>,
  /** What the last failure's log says of when it came (the paywall's record of a payment never sent says its own). */
  after = "after the transaction was sent",
): Promise<boolean> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await work();
      return true;
    } catch (error) {
      if (attempt >= afterSentAttemptsMax) {
        logger.error({ ...context, error, attempts: attempt }, `x402 settlement: ${what} failed ${after}`);
        return false;
      }
      logger.warn({ ...context, error, attempt }, `x402 settlement: ${what} failed; retrying`);
      await new Promise((resolve) => setTimeout(resolve, afterSentRetryPauseMs * attempt));
    }
  }
}

async function receiptOf(
  chain: X402Chain,
  hash: Hex,
): Promise<{ hash: Hex; success: boolean; gasWei: bigint; block: bigint } | null> {
  try {
    const receipt = await chain.publicClient.waitForTransactionReceipt({
      hash,
      timeout: chain.receiptTimeoutMs,
    });
    return {
      hash: receipt.transactionHash,
      success: receipt.status === "success",
      gasWei: feeWeiOf(receipt),
      block: receipt.blockNumber,
    };
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return null;
  }
}

const weiPerGwei = 1_000_000_000n;

/**
 * The gas of the settlement's transaction, in gwei rounded up: the rail's fee against its ETH clearing (idempotent:
 * the id is the transaction's). reconcile.ts books a transaction it concludes through it too.
 */
export async function bookGas(
  settlement: SettlementDeps,
  chain: X402Chain,
  txHash: Hex,
  gasWei: bigint,
  logger: Logger,
) {
  // A receipt of one block: on a rail that waits for more, a reorg may mine the transaction again at another price,
  // or drop it, and the gas booked from it would be wrong for good (the send-gas pass then fails on its terms). There
  // the pass books it, under the same id, once the transaction is final.
  if ((chain.confirmations ?? 1) > 1) return;
  await bookGasEntries(settlement, chain, logger, [
    {
      amount: divCeil(gasWei, weiPerGwei),
      id: x402GasId(chain.chainId, txHash),
      reference: txHash,
      detail: x402GasDetail(gasWei),
      label: `the gas of x402 settlement ${txHash}`,
    },
  ]);
}

/** One booking of gas paid: gwei of the chain's ETH, under an id derived from what it paid for. */
export type GasEntry = {
  readonly amount: bigint;
  readonly id: ReturnType<typeof derivedLedgerId>;
  readonly reference: string;
  readonly detail: Record<string, string>;
  readonly label: string;
};

/**
 * Gas the hot wallet paid for x402 settlements, each entry a transfer from the rail's ETH fee account against its
 * ETH clearing account (a zero entry is skipped); both settlers book through it, the batch one a share per payment.
 * An id booked before with another amount is left as it is and logged as an error: the ledger's gas for that
 * transaction then differs from the chain's, which no retry here could mend.
 */
export async function bookGasEntries(
  settlement: SettlementDeps,
  chain: X402Chain,
  logger: Logger,
  entries: readonly GasEntry[],
): Promise<void> {
  if (entries.every((entry) => entry.amount === 0n)) return;
  const gas = assets.ETH;
  const [fees, clearing] = await Promise.all([
    railAccountOpened(settlement, { kind: "fee", rail: chain.rail, asset: gas }),
    railAccountOpened(settlement, { kind: "clearing", rail: chain.rail, asset: gas }),
  ]);
  for (const entry of entries) {
    if (entry.amount === 0n) continue;
    const booked = await credit(
      settlement.ledger,
      {
        debitAccountId: fees.ledgerAccountId,
        creditAccountId: clearing.ledgerAccountId,
        amount: entry.amount,
        ledger: gas.ledger,
        code: transferCodes.payments.feePaid,
      },
      {
        id: entry.id,
        evidence: { rail: chain.rail, reference: entry.reference, detail: entry.detail },
        label: entry.label,
      },
    );
    if (booked === "conflict")
      logger.error(
        {
          transferId: entry.id.toString(),
          reference: entry.reference,
          gwei: entry.amount.toString(),
          rail: chain.rail,
        },
        "x402 gas: this booking exists with another amount; the ledger's gas differs from the chain's here",
      );
  }
}

/**
 * The seller's invoice for the payment (its split with it), bound to the claimed authorization: its id, or the
 * refusal when it cannot be made (the claim then given back). Both settlers book every payment this way.
 */
export async function bookInvoice(
  settlement: SettlementDeps,
  payment: ClaimedPayment,
  requirements: ExactRequirements,
  nowMs: () => number,
  logger: Logger,
): Promise<string | SettleResult> {
  const { chain } = requirements;
  const a = payment.authorization;
  let made: string | null = null;
  const notBooked = async (message: string): Promise<SettleResult> => {
    // Nothing was sent: the claim is given back (an invoice made already stays open, bound to nothing, and expires).
    // Bound to the invoice made, if binding it committed although it threw; else still bound to none — ours either
    // way, as the claim is held.
    await afterSent(logger, "giving the claim back", { payer: payment.payer, nonce: a.nonce }, async () => {
      if (made !== null && (await release(settlement.db, chain, a, { invoiceId: made }))) return;
      await release(settlement.db, chain, a, { invoiceId: null });
    });
    return {
      ok: false,
      refusal: "unexpected_settle_error",
      message: `the payment could not be booked: ${message}`,
      payer: payment.payer,
    };
  };
  const validForS = Number(a.validBefore) - Math.floor(nowMs() / 1000);
  try {
    const created = await createInvoice(settlement, {
      tenantId: payment.credit.tenantId,
      accountId: payment.credit.accountId,
      asset: chain.asset.code,
      ...(payment.credit.split === undefined ? {} : { split: payment.credit.split }),
      amount: formatAmount(a.value, chain.asset),
      rail: chain.rail,
      description: payment.description,
      expirySeconds: Math.min(Math.max(validForS, 0) + invoiceExpiryMarginS, invoiceExpirySecondsMax),
    });
    if (!created.ok) return await notBooked(created.message);
    made = created.invoice.id;
    await record(settlement.db, chain, a, { status: "claimed", invoiceId: made });
    return created.invoice.id;
  } catch (error) {
    logger.error(
      { error, payer: payment.payer, nonce: a.nonce },
      "x402 settlement: booking the invoice failed",
    );
    return await notBooked("the gateway could not write it");
  }
}
