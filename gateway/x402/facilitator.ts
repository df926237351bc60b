// Switchyard as an x402 facilitator, framework-free: /verify, /settle and /supported with the specification's
// bodies (v2 shapes; v1 payloads and requirements taken too). The HTTP glue (gateway/http/resources/x402.ts) finds
// the tenant and the account to credit, and answers what these return. A business refusal is an answer
// (`isValid: false` / `success: false` with x402's reason), never a throw.
import { type Address, type Hex, isAddressEqual } from "viem";
import type { Logger } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import type { SettlementDeps } from "../settlement/index.ts";
import { refusalOfFailure } from "./batch.ts";
import {
  type ChainRegistry,
  caip2Of,
  nonceUsed,
  type TokenDomainExtra,
  v1NetworkOf,
  type X402Chain,
} from "./chains.ts";
import { bookMinedTxGas } from "./reconcile.ts";
import { type Refused, refusedWith } from "./refusals.ts";
import { exactScheme } from "./requirements.ts";
import type { SettleResponse, SupportedResponse, VerifyResponse } from "./schemas.ts";
import type { X402Settler } from "./settle.ts";
import { createSimulationBatcher } from "./simulate-batch.ts";
import {
  boundTo,
  paidInWindow,
  sameHash,
  sendJournalOf,
  spenderOfSend,
  unsentMinedWithinS,
  unsentSpender,
} from "./spends.ts";
import { type CreditTarget, claim, record, sentAuthorization, unsentBoundTo } from "./store.ts";
import {
  type ExactRequirements,
  parsePayment,
  singleReads,
  type VerifiedPayment,
  type VerifyReads,
  verifyExact,
} from "./verify.ts";

/** What x402 needs, the facilitator and the paywall's scheme alike. */
export type X402Deps = {
  readonly db: Db;
  readonly settlement: SettlementDeps;
  readonly chains: ChainRegistry;
  readonly settler: X402Settler;
  readonly nowMs: () => number;
  readonly logger: Logger;
};

/** A verify or settle request's body, as the official HTTPFacilitatorClient sends it. */
export type FacilitatorRequest = { readonly paymentPayload: unknown; readonly paymentRequirements: unknown };

const payerOf = (payload: unknown): string | undefined => {
  const from = (payload as { payload?: { authorization?: { from?: unknown } } } | null)?.payload
    ?.authorization?.from;
  return typeof from === "string" ? from : undefined;
};

/**
 * The facilitator's reads: one statement a payment for the claim (its answer is this request's), and the simulation
 * through the simulator (simulate-batch.ts), so that a payment the token would refuse never costs a reverting
 * eth_call (a Solidity stack trace on Hardhat's chain); concurrent /verify and /settle calls share its eth_call.
 */
const facilitatorReads: VerifyReads = {
  ...singleReads,
  checkChain: createSimulationBatcher({ balances: false }),
};

/** Parses and verifies; the refusal or the verified payment. */
export async function checkPayment(
  deps: X402Deps,
  request: FacilitatorRequest,
): Promise<{ ok: true; payment: VerifiedPayment; requirements: ExactRequirements } | Refused> {
  const parsed = parsePayment(request.paymentPayload, request.paymentRequirements, deps.chains);
  if (!parsed.ok) return parsed;
  const bounds = deps.settlement.rails.get(parsed.requirements.chain.rail)?.snapshot?.();
  const outside = bounds === undefined ? null : outsideBounds(parsed.requirements.amount, bounds);
  if (outside !== null) return refusedWith("invalid_payment_requirements", `the amount must be ${outside}`);
  const verified = await verifyExact(deps, parsed.payload, parsed.requirements, facilitatorReads);
  if (!verified.ok) return verified;
  const value = verified.payment.authorization.value; // v1: at least the amount, so perhaps above the rail's most
  const above = bounds === undefined ? null : outsideBounds(value, bounds);
  if (above !== null)
    return refusedWith("invalid_exact_evm_payload_authorization_value", `value must be ${above}`);
  return { ok: true, payment: verified.payment, requirements: parsed.requirements };
}

/**
 * What an amount must be to be paid on the rail (its snapshot's least and most for one payment, which the invoice a
 * settle makes is held to), or null when it is: checked on /verify as on /settle, where an amount outside them (a
 * requirement of 0) was valid on /verify and then failed as the settle's unexpected_settle_error.
 */
function outsideBounds(amount: bigint, bounds: { amountMin: bigint; amountMax: bigint }): string | null {
  if (amount < bounds.amountMin) return `at least ${bounds.amountMin} atomic units`;
  if (amount > bounds.amountMax) return `at most ${bounds.amountMax} atomic units`;
  return null;
}

/** POST /verify: whether settling this payment would succeed now (nothing is claimed or sent). */
export async function facilitatorVerify(
  deps: X402Deps,
  request: FacilitatorRequest,
): Promise<VerifyResponse> {
  const checked = await checkPayment(deps, request);
  if (!checked.ok) {
    const payer = payerOf(request.paymentPayload);
    return {
      isValid: false,
      invalidReason: checked.refusal,
      invalidMessage: checked.message,
      ...(payer === undefined ? {} : { payer }),
    };
  }
  return { isValid: true, payer: checked.payment.payer };
}

/** POST /settle: verifies, claims the authorization for `credit`, and settles it (once, whoever asks again). */
export async function facilitatorSettle(
  deps: X402Deps,
  request: FacilitatorRequest,
  credit: CreditTarget,
): Promise<SettleResponse> {
  const network = networkOf(request.paymentRequirements);
  const failed = (refused: Refused, payer?: string): SettleResponse => ({
    success: false,
    errorReason: refused.refusal,
    errorMessage: refused.message,
    transaction: "",
    network,
    ...(payer === undefined ? {} : { payer }),
  });
  const checked = await checkPayment(deps, request);
  if (!checked.ok) {
    // Taken, or its window shut since (a retry after a settle whose transaction was not mined in time: the window is
    // checked before the nonce): a settlement it had answers again. Paid to a wallet other than the hot wallet of now:
    // a retry across a key rotation, answered only from what was bound to that wallet before (priorSettlement).
    const unsent =
      checked.refusal === "invalid_exact_evm_nonce_already_used" ||
      checked.refusal === "invalid_exact_evm_payload_authorization_valid_before"
        ? "seenUsed"
        : checked.refusal === "invalid_payment_requirements" && paysAnotherWallet(request, deps.chains)
          ? "readNonce"
          : null;
    if (unsent !== null) {
      const prior = await priorSettlement(deps, request, credit, unsent);
      if (prior !== null) return prior;
    }
    return failed(checked, payerOf(request.paymentPayload));
  }
  const { payment, requirements } = checked;
  if (!(await claim(deps.db, requirements.chain, payment.authorization, credit))) {
    const prior = await priorSettlement(deps, request, credit, null);
    if (prior !== null) return prior;
    return failed(
      {
        ok: false,
        refusal: "invalid_exact_evm_nonce_already_used",
        message: "this authorization was already taken",
      },
      payment.payer,
    );
  }
  const settled = await deps.settler.settle(
    { ...payment, credit, description: "x402 payment settled by the facilitator" },
    requirements,
  );
  if (!settled.ok) {
    // Refused before anything was sent, while an invoice of this account is bound to the authorization: the one this
    // settle booked (unsentInvoiceId: the rail bound it, then refused, e.g. its gas estimate reverted because a copy of
    // the authorization was mined first), or, refused as a nonce already used (which binds none), one an earlier settle
    // the rail refused before sending left bound — the rail read the nonce used where verify read it unused, mined
    // meanwhile by whoever holds the authorization, which pays that invoice (unsentSettlement). Answered as a retry
    // is, not final.
    const seenUsed = settled.refusal === "invalid_exact_evm_nonce_already_used";
    if (seenUsed || settled.unsentInvoiceId !== undefined) {
      const unsent = await unsentAnswer(deps, payment, requirements.network, credit, seenUsed);
      if (unsent !== null) return unsent;
    }
    // Sent, its fate not known yet: x402's settlement_pending with the transaction, which the official resource server
    // settles once again at once (x402ResourceServer.settleWithPendingRetry), answered from the row (priorSettlement):
    // settled once it is mined, pending (unexpected_settle_error) while it is not.
    if (settled.inFlight !== undefined)
      return settlementPending(payment, requirements.network, settled.inFlight, settled.message);
    return failed(settled, payment.payer);
  }
  return {
    success: true,
    transaction: settled.transaction,
    network: settled.network,
    payer: settled.payer,
    amount: settled.amount.toString(),
  };
}

/**
 * Verification that takes a claimed and spent nonce, and a window shut since it was claimed: the rest of the checks, as
 * for a first settle.
 */
const spentNonceReads: VerifyReads = {
  ...singleReads,
  isClaimed: null,
  checkChain: async () => ({ ok: true, balance: null, atBlock: null }),
  windowChecked: false,
};

/**
 * A settle retried after it succeeded (the official resource servers retry): the same success, the same transaction,
 * when the payment passes every check but its nonce's and its window's (signature, recipient, value against the
 * requirements; the window was checked when it was claimed) and the authorization was settled for the same tenant and
 * account and amount, paid to the wallet its invoice was bound with (SentAuthorization.boundTo: after a key rotation,
 * the wallet before it, which the requirements of a retry still name). A row left `submitted` (its outcome never
 * recorded) is completed here when its transaction's receipt, or a fee bump's that replaced it, shows the token spent
 * this authorization, or, when it did not, a copy of the authorization mined first paid the hot wallet on these terms
 * (spends.ts spenderOfSend). One that failed is answered the reason its settler gave (batch.ts refusalOfFailure;
 * reconciliation records what the settler would have), not "nonce already used": the same answer for the same fact; one
 * `submitted` that neither spent yet is answered pending. None sent, with `unsent`: what an earlier settle the rail
 * refused before sending left bound for this account (unsentSettlement), its nonce read used already ("seenUsed": the
 * caller's verify refused it as taken or its window shut) or not ("readNonce": refused for paying another wallet than
 * the hot wallet of now). Anything else (another tenant or account, other requirements, a claim not sent yet, a failure
 * no settler answered, a wallet it was not bound with): null, the caller refuses. The requirements' payTo is taken as
 * given: the bound wallet decides.
 */
async function priorSettlement(
  deps: X402Deps,
  request: FacilitatorRequest,
  credit: CreditTarget,
  unsent: "seenUsed" | "readNonce" | null,
): Promise<SettleResponse | null> {
  const parsed = parsePayment(request.paymentPayload, request.paymentRequirements, deps.chains, "given");
  if (!parsed.ok) return null;
  const verified = await verifyExact(deps, parsed.payload, parsed.requirements, spentNonceReads);
  if (!verified.ok) return null;
  const { payment } = verified;
  const { chain } = parsed.requirements;
  const prior = await sentAuthorization(deps.db, chain, payment.authorization);
  if (prior === null && unsent !== null)
    return await unsentAnswer(deps, payment, parsed.requirements.network, credit, unsent === "seenUsed");
  if (
    prior === null ||
    prior.tenantId !== credit.tenantId ||
    prior.accountId !== credit.accountId ||
    prior.amount !== payment.authorization.value ||
    !isAddressEqual(boundTo(chain, [prior]), payment.authorization.to)
  )
    return null;
  if (prior.status === "failed") {
    const refusal = refusalOfFailure(prior.failure);
    if (refusal === null) return null;
    return {
      success: false,
      errorReason: refusal,
      errorMessage: `transaction ${prior.txHash} did not pay this authorization: ${prior.failure}`,
      transaction: "",
      network: parsed.requirements.network,
      payer: payment.payer,
    };
  }
  // The transaction that moved the money: a copy of the authorization someone submitted first, if one did.
  let transaction = prior.spentTxHash ?? prior.txHash;
  if (prior.status === "submitted") {
    // Sent, its outcome never recorded: the chain says whether that transaction (or a fee bump that replaced it) spent
    // this authorization, or a copy of it mined first did (ours then reverted, or the token refused it in its batch)
    // and paid the hot wallet.
    const sendHashes = sendJournalOf(deps.settlement.rails, chain);
    const spent = await spenderOfSend(
      chain,
      prior.txHash as Hex,
      payment.authorization,
      deps.logger,
      sendHashes,
      prior.known,
    );
    // Not spent yet (not mined, or reverted leaving the authorization open to whoever holds it until its validBefore,
    // or the node cannot say now): pending, as its settler answered, not "nonce already used", which tells the client
    // to sign a new payment and pay twice once this one is mined.
    // Not x402's settlement_pending with the row's transaction: the row cannot say that transaction is still to be
    // mined (it may have been mined and reverted, or replaced by a fee bump), and a client waiting on it would take its
    // revert for the payment's failure while the authorization is still open.
    if (spent === null)
      return pendingSettle(
        payment,
        parsed.requirements.network,
        `transaction ${prior.txHash} has not spent this authorization yet, which may still be mined until its validBefore; it is credited if it is: settle the same payment again later`,
      );
    // Concluded only once the gas of our mined transaction is booked, as reconciliation concludes a row: a batch's gas
    // is x402's to book (the rail handed it over), and a row concluded before it was never read again, its gas never
    // booked. Not booked now, the row stays `submitted` for the pass; the answer is the chain's all the same.
    const ours = spent.replaced ? spent.txHash : (prior.txHash as Hex);
    // Its receipt as the search read it (a copy found from a fee bump's block leaves ours, not mined, to be read).
    const read = sameHash(spent.ours.txHash, ours) ? spent.ours.receipt : undefined;
    if (await bookMinedTxGas(deps, chain, ours, read))
      // A replacement of ours is the row's transaction from now on (as reconciliation moves it); a copy is kept beside.
      await record(deps.db, chain, payment.authorization, {
        status: "settled",
        spentBlock: spent.block,
        ...(spent.copy ? { spentTxHash: spent.txHash } : spent.replaced ? { txHash: spent.txHash } : {}),
      });
    transaction = spent.txHash;
  }
  return {
    success: true,
    transaction,
    network: parsed.requirements.network,
    payer: payment.payer,
    amount: prior.amount.toString(),
  };
}

/**
 * unsentSettlement's answer, or pending when it throws (the database or the node out of reach): nothing was sent, and
 * whether the payer's money is in this account through a bound invoice is unknown now — pending is the safe side
 * (final, the payer who paid it may sign anew and pay twice). The same on every path that asks it: before, a verify
 * refused as used answered a 500 for the fault a settle refused by the rail answered pending for.
 */
async function unsentAnswer(
  deps: X402Deps,
  payment: VerifiedPayment,
  network: string,
  credit: CreditTarget,
  seenUsed: boolean,
): Promise<SettleResponse | null> {
  try {
    return await unsentSettlement(deps, payment, network, credit, seenUsed);
  } catch (error) {
    deps.logger.warn(
      { error, payer: payment.payer },
      "x402 facilitator: whether a payment refused paid an invoice still bound is unknown now",
    );
    return pendingSettle(
      payment,
      network,
      "whether this authorization paid an earlier settlement of it cannot be read now: settle the same payment again shortly",
    );
  }
}

/**
 * A settle of a payment whose earlier settle for this account the rail refused before sending it (settle.ts
 * unsentInvoiceId: the claim given back, its invoice left bound to the payer's nonce), once its nonce reads used or its
 * window shut — or this very settle, refused so: whoever holds the authorization (the payer, the resource server, a
 * stranger who saw it) may have mined it, which pays that invoice, credited by the deposit watcher. Paid by this very
 * authorization's transfer to the wallet the invoice was bound with (spends.ts boundTo; after a key rotation, the
 * wallet before it, which the payment must name): the same success a settle retried after success hears, with that
 * transaction. Bound and not paid yet while that transfer is mined (the watcher not past its confirmations), or when
 * the node cannot say now: pending, so that the payer is not told to sign a new payment and pay twice; when the nonce
 * was used otherwise (cancelled, spent on other terms), or none such is bound: null, the caller's refusal stands.
 * Before, it was "nonce already used" whatever paid it: the paywall kept its request owed (scheme.ts
 * servedAsUnsentOwed), the facilitator nothing. `payment` is verified but for its nonce and window, the payer's
 * signature among the rest. `seenUsed` false (the rail refused it for another reason than its nonce): the nonce is read
 * at the latest block first, and unused there the refusal stands — the search below takes a nonce read used, and
 * answers "unknown" while the window is open and no log shows it spent. Throws when the database or the node cannot be
 * read (unsentAnswer).
 */
async function unsentSettlement(
  deps: X402Deps,
  payment: VerifiedPayment,
  network: string,
  credit: CreditTarget,
  seenUsed: boolean,
): Promise<SettleResponse | null> {
  const { chain } = payment.requirements;
  const a = payment.authorization;
  // Only invoices bound with the wallet this authorization pays: a payer's other authorization of the nonce, to
  // another address, answers nothing of theirs.
  const invoices = (await unsentBoundTo(deps.db, chain, a, credit)).filter((invoice) =>
    isAddressEqual(boundTo(chain, [invoice]), a.to),
  );
  if (invoices.length === 0) return null;
  let latest: { readonly number: bigint; readonly timestamp: bigint } | undefined;
  if (!seenUsed) {
    latest = await chain.publicClient.getBlock({ blockTag: "latest" });
    if (!(await nonceUsed(chain, a.from, a.nonce, latest.number))) return null;
  }
  const { spending, unread, gone } = await unsentSpender(chain, invoices, a, deps.logger);
  if (spending !== null)
    return {
      success: true,
      transaction: spending.txHash,
      network,
      payer: payment.payer,
      amount: a.value.toString(),
    };
  if (unread !== null)
    return pendingSettle(
      payment,
      network,
      `whether transaction ${unread} spent this authorization cannot be read now: settle the same payment again shortly`,
    );
  // Paid only by transactions that did not spend it: not this authorization's doing. Paid by one gone (a reorg), or
  // not paid yet: the authorization's transfer, mined (again), is credited once the watcher has it.
  if (!gone && invoices.every((invoice) => invoice.paid)) return null;
  // No block a verify read its nonce unused at is kept: searched for over its window.
  const spent = await paidInWindow(
    chain,
    { ...a, to: boundTo(chain, invoices) },
    { verifiedAt: null, maxS: unsentMinedWithinS, latest },
    deps.logger,
  );
  if (spent === null) return null;
  return pendingSettle(
    payment,
    network,
    spent === "unknown"
      ? "whether this authorization paid cannot be read now: settle the same payment again shortly"
      : "this authorization is spent to the gateway, not credited yet: settle the same payment again shortly, and it is answered settled once it is",
  );
}

/**
 * A settle whose transaction `transaction` was sent and is not known mined yet: x402's `settlement_pending`, with the
 * transaction (as the reference facilitator answers a receipt not had in time). Not final: the same payment settled
 * again is answered what became of it.
 */
const settlementPending = (
  payment: VerifiedPayment,
  network: string,
  transaction: Hex,
  message: string,
): SettleResponse => ({
  success: false,
  errorReason: "settlement_pending",
  errorMessage: message,
  transaction,
  network,
  payer: payment.payer,
});

/** A settle answered pending: not final, the same payment settled again later is answered what became of it. */
const pendingSettle = (payment: VerifiedPayment, network: string, message: string): SettleResponse => ({
  success: false,
  errorReason: "unexpected_settle_error",
  errorMessage: message,
  transaction: "",
  network,
  payer: payment.payer,
});

/**
 * Whether the requirements name a payTo on a chain of the gateway's that is not its hot wallet of now: a settle retried
 * after the hot wallet's key rotated, its requirements built before (or a stale or wrong payTo, which only what was
 * bound to that wallet can answer: priorSettlement).
 */
function paysAnotherWallet(request: FacilitatorRequest, chains: ChainRegistry): boolean {
  const given = request.paymentRequirements as { network?: unknown; payTo?: unknown } | null;
  if (typeof given?.network !== "string" || typeof given.payTo !== "string") return false;
  if (!/^0x[0-9a-fA-F]{40}$/.test(given.payTo)) return false;
  const chain = chains.byNetwork(given.network);
  return chain !== null && !isAddressEqual(given.payTo as Address, chain.hotWallet);
}

/** The chain's token domain if it is read within `ms` (the read goes on, kept for the next ask); else nothing. */
async function domainWithin(
  chains: ChainRegistry,
  chain: X402Chain,
  ms: number,
): Promise<Partial<TokenDomainExtra>> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Partial<TokenDomainExtra>>((resolve) => {
    timer = setTimeout(() => resolve({}), ms);
  });
  try {
    return await Promise.race([chains.domainOf(chain).catch(() => ({})), late]);
  } finally {
    clearTimeout(timer);
  }
}

function networkOf(requirements: unknown): string {
  const network = (requirements as { network?: unknown } | null)?.network;
  return typeof network === "string" ? network : "";
}

/**
 * How long GET /supported waits for a token's EIP-712 domain (read from the chain once, then kept): a chain slow or
 * down leaves its kinds without `name` and `version` rather than holding the answer.
 */
export const supportedDomainWaitMs = 1_000;

/**
 * GET /supported: `exact` on every chain (v2 by CAIP-2, v1 where the chain has a name); `extra` names the token
 * (`asset`), the hot wallet (`payTo`) and the token's EIP-712 domain (`name`, `version`), all a resource server needs
 * to build requirements the gateway settles. Before, the domain was left out and a server had to read it from the
 * token itself (the official Python SDK's ExactEvmServerScheme knows it only for its default assets).
 */
export async function facilitatorSupported(deps: Pick<X402Deps, "chains">): Promise<SupportedResponse> {
  const kinds: SupportedResponse["kinds"] = [];
  const domains = await Promise.all(
    deps.chains.chains.map((chain) => domainWithin(deps.chains, chain, supportedDomainWaitMs)),
  );
  deps.chains.chains.forEach((chain, i) => {
    const extra = { asset: chain.token, payTo: chain.hotWallet, ...domains[i] };
    kinds.push({ x402Version: 2, scheme: exactScheme, network: caip2Of(chain.chainId), extra });
    const v1 = v1NetworkOf(chain.chainId);
    if (v1 !== null) kinds.push({ x402Version: 1, scheme: exactScheme, network: v1, extra });
  });
  return {
    kinds,
    extensions: [],
    signers: { "eip155:*": [...new Set(deps.chains.chains.map((chain) => chain.hotWallet))] },
  };
}
