// x402 as one of the paywall's ways to pay (gateway/paywall/scheme.ts): its part of the shared 402 (the v2
// PAYMENT-REQUIRED header and the v1 body, `exact` on every EVM rail the paywall offers), and the verdict on a
// request that carries PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1). A v2 payment is matched by deep equality of its
// `accepted` against the requirements rebuilt for this request (the reference server's rule), a v1 payment by
// scheme and network; then verified, and the authorization claimed before the resource is served, so a replayed or
// concurrent copy is refused rather than served. The claim weighs the payment against the payer's balance less what
// its other payments hold, in the database (claims-batch.ts), so that payments the balance cannot all cover are
// refused before their routes run, on every gateway process. After the handler: settled (served) or the claim given
// back; the claim holds the payer's balance while its transfer may still be mined.
import { isDeepStrictEqual } from "node:util";
import type { Hex } from "viem";
import type {
  ChallengePart,
  HeaderLine,
  PaymentScheme,
  PaywallRequest,
  PricedResource,
  SchemePrice,
  SchemeVerdict,
} from "../paywall/scheme.ts";
import { nonceUsed, type TokenDomainExtra, type X402Chain } from "./chains.ts";
import { createClaimBatcher } from "./claims-batch.ts";
import {
  decodeHeader,
  encodeHeader,
  paymentHeaderOf,
  receiptHeaderNames,
  requiredHeaderName,
} from "./codec.ts";
import type { X402Deps } from "./facilitator.ts";
import { domainSeparator } from "./recover.ts";
import { type Refused, refusedWith } from "./refusals.ts";
import { requirementsV1, requirementsV2 } from "./requirements.ts";
import {
  exactEvmPayload,
  type PaymentRequiredV1,
  type PaymentRequiredV2,
  type PaymentRequirementsV1,
  type PaymentRequirementsV2,
  type SettleResponse,
} from "./schemas.ts";
import { afterSent } from "./settle.ts";
import { createSimulationBatcher } from "./simulate-batch.ts";
import {
  boundTo,
  type KnownOfRow,
  lastConfirmedAt,
  paidInWindow,
  sendJournalOf,
  spenderOfSend,
  unsentMinedWithinS,
  unsentSpender,
} from "./spends.ts";
import {
  markOwed,
  markUnsentOwed,
  owedAt,
  release,
  seenSpent,
  takeOwed,
  takeUnsentOwed,
  unsentOwedAt,
} from "./store.ts";
import {
  authorizationOf,
  type Eip3009Authorization,
  parsePayment,
  signedByPayer,
  type VerifyReads,
  validBeforeMarginS,
  verifyExact,
} from "./verify.ts";

type Offer = { rail: string; price: SchemePrice };

/** A payment sent again for a request owed: its authorization and the signature it came with, not checked yet. */
type OwedSigned = { chain: X402Chain; authorization: Eip3009Authorization; signature: Hex };
type Built = { chain: X402Chain; v2: PaymentRequirementsV2; v1: PaymentRequirementsV1 | null };

const refusal = (refused: Refused) => ({ code: refused.refusal, message: refused.message });

/** The paywall's x402 scheme over these chains, verifying and settling with `deps`. */
export function createX402Scheme(deps: X402Deps): PaymentScheme {
  // Concurrent requests' claims go to the database as one transaction per batch. Nothing asks "already claimed?"
  // before: the claim after verification is that check (a replay is refused by it, after its simulation).
  const claims = createClaimBatcher(deps.db, () => BigInt(Math.floor(deps.nowMs() / 1000)));
  // … and their simulations to the chain as one eth_call per batch; the tokens' domain separators are kept (a few:
  // one per chain, token and domain).
  const separators = new Map<string, Uint8Array>();
  const reads: VerifyReads = {
    isClaimed: null,
    checkChain: createSimulationBatcher(),
    separator(chain, domain) {
      const key = JSON.stringify([chain.chainId, chain.token.toLowerCase(), domain.name, domain.version]);
      let separator = separators.get(key);
      if (separator === undefined) {
        separator = domainSeparator(domain, chain.chainId, chain.token);
        separators.set(key, separator);
      }
      return separator;
    },
  };
  /** The requirements for each offer on a chain of ours (an offer whose token cannot be read now is left out). */
  async function build(resource: PricedResource, offers: readonly Offer[], url: string): Promise<Built[]> {
    const built: Built[] = [];
    for (const offer of offers) {
      const chain = deps.chains.byRail(offer.rail);
      if (chain === null || offer.price.asset.code !== chain.asset.code) continue;
      let domain: TokenDomainExtra;
      try {
        domain = await deps.chains.domainOf(chain);
      } catch (error) {
        deps.logger.warn(
          { rail: chain.rail, error: String(error) },
          "x402: the token's domain cannot be read",
        );
        continue;
      }
      built.push({
        chain,
        v2: requirementsV2(chain, domain, offer.price.amount),
        v1: requirementsV1(chain, domain, offer.price.amount, {
          url,
          description: resource.description,
          mimeType: resource.mimeType,
        }),
      });
    }
    return built;
  }

  return {
    id: "x402",
    assetFor: (rail) => deps.chains.byRail(rail)?.asset ?? null,
    carries: (request) => paymentHeaderOf(request.headers, request.rawHeaders) !== null,

    async challenge(resource, offers, request): Promise<ChallengePart> {
      const built = await build(resource, offers, request.url);
      // No chain of the offers could be read now (its token's domain): nothing to pay with.
      if (built.length === 0) return { headers: [], unavailable: true };
      const v2: PaymentRequiredV2 = {
        x402Version: 2,
        error: "Payment required",
        resource: { url: request.url, description: resource.description, mimeType: resource.mimeType },
        accepts: built.map((b) => b.v2),
      };
      const headers: HeaderLine[] = [[requiredHeaderName, encodeHeader(v2)]];
      const accepts = built.flatMap((b) => (b.v1 === null ? [] : [b.v1]));
      if (accepts.length === 0) return { headers };
      const v1: PaymentRequiredV1 = { x402Version: 1, error: "X-PAYMENT header is required", accepts };
      return { headers, body: v1 };
    },

    async verify(resource, offers, request: PaywallRequest): Promise<SchemeVerdict> {
      const header = paymentHeaderOf(request.headers, request.rawHeaders);
      if (header === null)
        return { kind: "refused", refusal: { code: "invalid_payload", message: "no payment header" } };
      if ("ok" in header) return { kind: "refused", refusal: refusal(header) };
      const decoded = decodeHeader(header.value);
      if (!decoded.ok) return { kind: "refused", refusal: refusal(decoded) };
      const raw = decoded.value as Record<string, unknown>;
      const built = await build(resource, offers, request.url);
      const matched = match(raw, built);
      if ("ok" in matched)
        return (
          (await owedOnOtherTerms(raw, built, resource)) ?? { kind: "refused", refusal: refusal(matched) }
        );
      const parsed = parsePayment(raw, matched.requirements, deps.chains);
      if (!parsed.ok) return { kind: "refused", refusal: refusal(parsed) };
      return await verifyAndClaim(resource, parsed);
    },
  };

  /**
   * A v2 payment on one of the resource's networks whose terms are not the resource's now (its price or account
   * changed, or the price lock's window moved, since it was paid): answered as servedAsOwed answers a request owed
   * here (served, or refused pending), else null. The payer was told to send the same payment again once it is
   * mined; a price moved meanwhile is no reason to refuse what it paid for.
   */
  async function owedOnOtherTerms(
    raw: Record<string, unknown>,
    built: readonly Built[],
    resource: PricedResource,
  ): Promise<SchemeVerdict | null> {
    if (raw.x402Version !== 2) return null;
    const network = (raw.accepted as { network?: unknown } | null)?.network;
    const same = built.find((b) => b.v2.network === network);
    if (same === undefined) return null;
    const parsed = parsePayment(raw, same.v2, deps.chains);
    return parsed.ok ? await servedAsOwed(parsed, resource) : null;
  }

  /**
   * The request a payment is owed at this paywall (its settlement was in flight when the payer was answered 402),
   * once the token says its authorization is spent: a paid verdict that settles nothing more (the receipt names the
   * transaction that spent it), or null. Taken once; a request then not served is owed again. Owed here and not spent
   * yet (its transaction not mined, or reverted leaving the authorization open to whoever holds it, or the node cannot
   * say now): refused pending, as its first answer was, so that the payer sends it again later rather than sign a new
   * payment and pay twice (before: "nonce already used"). Either only on the payer's own signature (payersOwn). None
   * owed here: the request the rail refused before sending, if one is (servedAsUnsentOwed); `seenUsed`, the caller
   * read the token's nonce used (for it).
   */
  async function servedAsOwed(
    parsed: Extract<ReturnType<typeof parsePayment>, { ok: true }>,
    resource: PricedResource,
    seenUsed = false,
  ): Promise<SchemeVerdict | null> {
    const read = exactEvmPayload.safeParse(parsed.payload.payload);
    if (!read.success) return null;
    const { chain } = parsed.requirements;
    const authorization = authorizationOf(read.data.authorization);
    const signed = { chain, authorization, signature: read.data.signature as Hex };
    const { paywallId } = resource;
    const owed = await owedAt(deps.db, chain, authorization, { paywallId, tenantId: resource.tenantId });
    if (owed === null) return await servedAsUnsentOwed(parsed, resource, signed, seenUsed);
    // Served or answered pending alike: the payer's own signature first.
    const own = await payersOwn(signed);
    if (own !== true) return own;
    const sent = owed.txHash;
    const spending = await spendingTransaction(chain, authorization, sent as Hex, owed);
    if (spending === null)
      return {
        kind: "refused",
        refusal: {
          code: "unexpected_settle_error",
          message: `transaction ${sent} has not spent this payment's authorization yet, which may still be mined until its validBefore: send the same payment again once it is mined, and it is served`,
        },
      };
    if (!(await takeOwed(deps.db, chain, authorization, paywallId))) return null;
    return owedVerdict(parsed, authorization, spending, () => markedOwed(chain, authorization, paywallId));
  }

  /**
   * Whether `signed.signature` is the payer's own over the authorization (signedByPayer), whatever path brought the
   * payment here (owedOnOtherTerms checks nothing else): true, or what the request is answered instead — refused
   * `unexpected_verify_error` when it cannot be checked now, null when it is not the payer's (the payment's own
   * refusal stands). The payer, nonce and value of an authorization mined are public in the token's logs, and anyone
   * watching the hot wallet could otherwise take what is owed with a signature made up. One copied from the mined
   * transaction's calldata still passes: x402 gives the paywall nothing more of the payer's to tell the two apart.
   * Checked only once a row owed here is found: a domain read (and, for a contract wallet, its code) that a payment
   * owed nothing never needs.
   */
  async function payersOwn(signed: OwedSigned): Promise<true | SchemeVerdict | null> {
    const own = await signedByPayer(deps, signed.chain, signed.authorization, signed.signature, reads);
    if (own === null)
      return {
        kind: "refused",
        refusal: {
          code: "unexpected_verify_error",
          message: "the payment's signature cannot be checked now: send the same payment again shortly",
        },
      };
    return own ? true : null;
  }

  /**
   * The paid verdict of a request owed here and taken (servedAsOwed, servedAsUnsentOwed): it settles nothing more, its
   * receipt names `transaction`, the one that spent the authorization; not served, or its answer not delivered, the
   * request is owed again (`owedAgain`: true once it is recorded so).
   */
  function owedVerdict(
    parsed: Extract<ReturnType<typeof parsePayment>, { ok: true }>,
    authorization: { from: Hex; value: bigint },
    transaction: Hex,
    owedAgain: () => Promise<boolean>,
  ): SchemeVerdict {
    const receiptHeader = parsed.requirements.version === 2 ? receiptHeaderNames.v2 : receiptHeaderNames.v1;
    const receipt: SettleResponse = {
      success: true,
      transaction,
      network: parsed.requirements.network,
      payer: authorization.from,
      amount: authorization.value.toString(),
    };
    let completed: ReturnType<Extract<SchemeVerdict, { kind: "paid" }>["complete"]> | null = null;
    return {
      kind: "paid",
      payer: authorization.from,
      complete(outcome) {
        completed ??= (async () => {
          if (!outcome.served) {
            const owed = await owedAgain();
            return {
              settled: false as const,
              refusal: {
                code: "resource_not_served",
                message: owed
                  ? "the resource was not served: it is still owed"
                  : "the resource was not served, and what it is owed could not be recorded",
              },
              headers: [],
            };
          }
          return {
            settled: true as const,
            headers: [[receiptHeader, encodeHeader(receipt)] as const],
            undelivered: owedAgain,
          };
        })();
        return completed;
      },
    };
  }

  /**
   * The request owed at this paywall whose settlement the rail refused before sending it (the payer short of funds, the
   * node out of reach: markUnsentOwed), once someone else mined the authorization: the rail kept the invoice bound to
   * the payer's nonce, and the deposit watcher credited it from that transfer. Served as servedAsOwed serves, once
   * (takeUnsentOwed), with the receipt of the transaction that paid the invoice — when it spent this very
   * authorization, the value from the payer to the wallet the invoice was bound with (spends.ts unsentSpender) — or
   * null. Before, the same payment sent again was refused as a nonce already used, though the payer had paid for what
   * it asked. Its invoice still bound and not paid yet while this very authorization's transfer to that wallet is mined
   * (the watcher not past its confirmations: spentNotCredited): refused pending, as servedAsOwed refuses one not mined
   * yet, so that the payer sends it again rather than sign a new payment and pay twice. Served or answered pending only
   * on the payer's own signature (payersOwn). `seenUsed`: the caller read the token's nonce used.
   */
  async function servedAsUnsentOwed(
    parsed: Extract<ReturnType<typeof parsePayment>, { ok: true }>,
    resource: PricedResource,
    signed: OwedSigned,
    seenUsed: boolean,
  ): Promise<SchemeVerdict | null> {
    const { chain, authorization } = signed;
    const { paywallId } = resource;
    const owed = await unsentOwedAt(deps.db, chain, authorization, {
      paywallId,
      tenantId: resource.tenantId,
    });
    // A receipt that cannot be read now, while none read proves the payment: whether it is served is unknown. One whose
    // transaction the node does not know (gone): its credit is taken back once the watcher reads the reorg.
    const { spending, unread, gone } = await unsentSpender(chain, owed, authorization, deps.logger);
    if (spending === null) {
      if (unread !== null)
        return ifPayersOwn(signed, {
          kind: "refused",
          refusal: {
            code: "unexpected_settle_error",
            message: `whether transaction ${unread} spent this payment's authorization cannot be read now: send the same payment again shortly, and it is served if it did`,
          },
        });
      // Not paid yet, or paid only by a transaction gone: the authorization, mined again, is credited once the watcher
      // has it (its own confirmations, the reorg's reversal).
      if (!gone && owed.every((row) => row.paid)) return null;
      // Searched for from the earliest block a verify of it read its nonce unused at: any of its rows may be the one
      // the transfer pays. One row without (written before migration 0072): over the authorization's window.
      let verifiedAt: bigint | null = owed[0]?.verifiedBlock ?? null;
      for (const row of owed)
        if (verifiedAt !== null && (row.verifiedBlock === null || row.verifiedBlock < verifiedAt))
          verifiedAt = row.verifiedBlock;
      return await spentNotCredited(signed, seenUsed, verifiedAt, boundTo(chain, owed));
    }
    const own = await payersOwn(signed);
    if (own !== true) return own;
    if (!(await takeUnsentOwed(deps.db, spending.invoiceId))) return null;
    const { invoiceId } = spending;
    // Owed again (retried as every bookkeeping after a transaction was sent): true once it is.
    return owedVerdict(parsed, authorization, spending.txHash, () =>
      afterSent(deps.logger, "marking the request owed", { payer: authorization.from, paywallId }, () =>
        takeUnsentOwed(deps.db, invoiceId, true),
      ),
    );
  }

  /** `verdict`, once the payment's signature is the payer's own (payersOwn); null stays null, unchecked. */
  async function ifPayersOwn(
    signed: OwedSigned,
    verdict: SchemeVerdict | null,
  ): Promise<SchemeVerdict | null> {
    if (verdict === null) return null;
    const own = await payersOwn(signed);
    return own === true ? verdict : own;
  }

  /**
   * A request owed through an invoice still bound to the authorization and not paid (servedAsUnsentOwed), answered on
   * the payer's own signature only (payersOwn, first: the payer, nonce and value are public, and a signature made up
   * would otherwise drive the node's reads, or hear "send it again" over its final refusal). Refused pending when this
   * very authorization's transfer to `to` is mined (the wallet its invoice was bound with: spends.ts boundTo; credited
   * once the watcher has it confirmed), or when the node cannot say now; null, the payment's own refusal final, when
   * its nonce was used otherwise (cancelled, or spent on other terms: spends.ts paidInWindow searches the token's logs
   * from `verifiedAt`, the block a verify read the nonce unused at, or over its window without one). `seenUsed`: the
   * caller read the nonce used, and it is not read again (a node behind could read it unused). Else it is read at the
   * latest block. Unused, its window open by the gateway's clock and that block's time: null, by choice — pending would
   * hold every such payer until its window shuts, at the known cost that one mined just before, read unused by a node
   * behind, leaves the payer to sign anew and pay twice. Unused, its window shut by either: pending while the chain may
   * still mine it (shutNotLapsed), then null. Before, the window was taken as shut by verify's expiry and the latest
   * block's time alone, and a payment mined just before its validBefore, sent again past it to a node one block behind,
   * was refused as final.
   */
  async function spentNotCredited(
    signed: OwedSigned,
    seenUsed: boolean,
    verifiedAt: bigint | null,
    to: Hex,
  ): Promise<SchemeVerdict | null> {
    const own = await payersOwn(signed);
    if (own !== true) return own;
    const { chain, authorization } = signed;
    let latest: { readonly number: bigint; readonly timestamp: bigint } | undefined;
    if (!seenUsed) {
      let used: boolean;
      let pending = false;
      try {
        // The clock before the block: one mined between the two reads, on a chain that mines on demand, is stamped no
        // earlier than this (shutNotLapsed).
        const nowS = BigInt(Math.floor(deps.nowMs() / 1000));
        const block = await chain.publicClient.getBlock({ blockTag: "latest" });
        used = await nonceUsed(chain, authorization.from, authorization.nonce, block.number);
        if (!used) pending = await shutNotLapsed(chain, authorization.validBefore, block, nowS);
        latest = block;
      } catch (error) {
        deps.logger.warn(
          { error, payer: authorization.from },
          "x402: whether a refused payment's authorization was mined is unknown now",
        );
        return {
          kind: "refused",
          refusal: {
            code: "unexpected_settle_error",
            message:
              "whether this payment's authorization was mined cannot be read now: send the same payment again shortly, and it is served if it was",
          },
        };
      }
      if (!used) {
        if (!pending) return null;
        return {
          kind: "refused",
          refusal: {
            code: "unexpected_settle_error",
            message: `this payment's authorization was not mined by block ${latest.number}, and the chain's last confirmed block is before its validBefore: it may still be mined until then; send the same payment again shortly, and it is served if it was`,
          },
        };
      }
    }
    const terms = { ...authorization, to };
    const spent = await paidInWindow(
      chain,
      terms,
      { verifiedAt, maxS: unsentMinedWithinS, latest },
      deps.logger,
    );
    if (spent === null) return null;
    if (spent === "unknown")
      return {
        kind: "refused",
        refusal: {
          code: "unexpected_settle_error",
          message:
            "whether this payment's authorization paid cannot be read now: send the same payment again shortly, and it is served if it did",
        },
      };
    return {
      kind: "refused",
      refusal: {
        code: "unexpected_settle_error",
        message:
          "this payment's authorization is spent, not yet credited: send the same payment again shortly, and it is served once it is",
      },
    };
  }

  /**
   * Whether an authorization whose nonce is unused at `latest` may still be mined with its window shut by a clock
   * (spentNotCredited): shut by the gateway's (`nowS`, read before `latest`; verify's expiry, validBeforeMarginS) or
   * by `latest`'s time, while the time of the chain's last confirmed block is still before `validBefore`. That block is
   * read only when `latest`'s time is at or past it and the chain counts more than one confirmation. On a chain that
   * mines on demand (X402Chain.minesOnDemand), `latest`'s time is taken as the gateway's clock when that is later: the
   * latest block's time stays where the last transaction left it until another comes, which may be never, while the
   * next block — the only one that could take the authorization — is stamped with the wall clock; read as it is, every
   * resend past validBefore would be answered pending for as long as the chain stays idle. That assumes the chain's
   * clock is not set behind the wall clock (evm_setNextBlockTimestamp to an earlier time), and serves only a chain of
   * one confirmation: with more (an embedded chain of block_interval_ms 0 and confirmations above 1), as on a chain
   * that mines on its own schedule or an external node that mines on demand (rpc_url), the answer waits for a confirmed
   * block's time, pending while the chain is idle. Throws what the node throws.
   */
  async function shutNotLapsed(
    chain: X402Chain,
    validBefore: bigint,
    latest: { readonly number: bigint; readonly timestamp: bigint },
    nowS: bigint,
  ): Promise<boolean> {
    const latestS = chain.minesOnDemand === true && nowS > latest.timestamp ? nowS : latest.timestamp;
    if (latestS < validBefore) return validBefore < nowS + validBeforeMarginS;
    const confirmedAt = lastConfirmedAt(chain, latest.number);
    if (confirmedAt === latest.number) return false;
    const confirmed = await chain.publicClient.getBlock({ blockNumber: confirmedAt });
    return confirmed.timestamp < validBefore;
  }

  /**
   * The transaction that spent the authorization: `sent` (ours, or the copy of it that someone submitted first and that
   * paid the hot wallet, which owedAt gives when the row keeps one), or a fee bump's replacement of ours (the send
   * journal's hashes of the send), whose receipt holds the token's AuthorizationUsed of it — or, when the one of ours
   * mined did not spend it, a copy mined before it or after that paid the hot wallet, which reconciliation has not
   * recorded yet (spends.ts spenderOf, its search bounded by `known`, the row's). The hot wallet is the one the row's
   * invoice was bound with (spends.ts boundTo): the hot wallet of now is another once the operator rotated its key.
   * Another's spend of the payer's nonce on other terms (the payer's own authorization of the nonce to itself) is none.
   * Null while none is mined, or when the node cannot say now.
   */
  async function spendingTransaction(
    chain: X402Chain,
    authorization: { from: Hex; nonce: Hex; value: bigint },
    sent: Hex,
    row: { readonly known: KnownOfRow; readonly boundTo: Hex | null },
  ): Promise<Hex | null> {
    const { known } = row;
    try {
      const terms = { ...authorization, to: boundTo(chain, [row]) };
      const sendHashes = sendJournalOf(deps.settlement.rails, chain);
      return (await spenderOfSend(chain, sent, terms, deps.logger, sendHashes, known))?.txHash ?? null;
    } catch (error) {
      deps.logger.warn(
        { error, payer: authorization.from },
        "x402: whether an owed payment was spent is unknown now",
      );
      return null;
    }
  }

  /** Marks a request owed (retried as every bookkeeping after a transaction was sent): true once it is marked. */
  function markedOwed(
    chain: X402Chain,
    authorization: { from: Hex; nonce: Hex },
    paywallId: string,
  ): Promise<boolean> {
    return afterSent(deps.logger, "marking the request owed", { payer: authorization.from, paywallId }, () =>
      markOwed(deps.db, chain, authorization, paywallId),
    );
  }

  /** Verifies and claims a parsed payment; the verdict. */
  async function verifyAndClaim(
    resource: PricedResource,
    parsed: Extract<ReturnType<typeof parsePayment>, { ok: true }>,
  ): Promise<SchemeVerdict> {
    const { requirements } = parsed;
    const { chain } = requirements;
    const credit = {
      tenantId: resource.tenantId,
      accountId: resource.accountId,
      ...(resource.split === undefined ? {} : { split: resource.split }),
    };
    const verified = await verifyExact(deps, parsed.payload, parsed.requirements, reads);
    if (!verified.ok) {
      // Spent, its window shut, of a value below the price now (a v1 payment, the price raised since it was paid), or
      // to another wallet (a v1 payment signed to the hot wallet before the operator rotated its key: v1 requirements
      // are matched by network alone, where a v2 payment's old payTo takes owedOnOtherTerms): a request it is owed here
      // is served once its transfer to the wallet its invoice was bound with is found, or answered pending while it
      // may yet be (servedAsOwed, which takes only the payer's own signature). Its signature (and, spent, its window
      // and value) were checked first. Before, a v1 payment owed across a rotation was refused for good as a
      // recipient mismatch, though it paid.
      if (
        verified.refusal === "invalid_exact_evm_nonce_already_used" ||
        verified.refusal === "invalid_exact_evm_payload_authorization_valid_before" ||
        verified.refusal === "invalid_exact_evm_payload_authorization_value" ||
        verified.refusal === "invalid_exact_evm_payload_recipient_mismatch"
      ) {
        // A nonce already used is the token's own answer here (verify.ts whyNotTaken: this scheme's reads ask no
        // claim first), which the search for its transfer takes as read. A window shut is final only once the chain's
        // last confirmed block is at or past it too (spentNotCredited).
        const used = verified.refusal === "invalid_exact_evm_nonce_already_used";
        const owed = await servedAsOwed(parsed, resource, used);
        if (owed !== null) return owed;
      }
      return { kind: "refused", refusal: refusal(verified) };
    }
    const { payment } = verified;
    // Taken before tells a copy of a payment in flight that its nonce is taken, not that funds are short.
    const claimed = await claims.claim(chain, payment.authorization, credit, verified.balance);
    // Taken by a payment whose settlement the gateway saw refused as a nonce already used (its own read of the nonce
    // spent): not read again, for this verify's node, which read it unused, may be behind. Before, a resend to it was
    // refused as already taken while a copy paid its invoice, and the payer signed anew and paid twice.
    if (claimed.kind === "taken")
      return (
        (await servedAsOwed(parsed, resource, await seenSpent(deps.db, chain, payment.authorization))) ?? {
          kind: "refused",
          refusal: {
            code: "invalid_exact_evm_nonce_already_used",
            message: "this authorization was already taken",
          },
        }
      );
    if (claimed.kind === "short")
      return {
        kind: "refused",
        refusal: {
          code: "insufficient_funds",
          message: `${payment.payer} holds ${claimed.balance}, of which its payments in flight hold ${claimed.held}: less than ${payment.authorization.value} is left`,
        },
      };
    const receiptHeader = payment.version === 2 ? receiptHeaderNames.v2 : receiptHeaderNames.v1;
    /** Settles a served request's payment, or gives its claim back. */
    const completeOnce = async (outcome: { served: boolean }) => {
      if (!outcome.served) {
        await release(deps.db, chain, payment.authorization, { invoiceId: null });
        return {
          settled: false as const,
          refusal: {
            code: "resource_not_served",
            message: "the resource was not served: nothing settled",
          },
          headers: [],
        };
      }
      const settled = await deps.settler.settle(
        { ...payment, credit, description: resource.description || `x402: ${resource.service}` },
        requirements,
      );
      if (!settled.ok) {
        // In flight (not mined in time, or reverted leaving its authorization open to whoever holds it: spends.ts
        // unspentByOurs): the payer hears 402, and the same payment sent again once it is mined is served
        // (servedAsOwed), once.
        const owed =
          settled.pending === true && (await markedOwed(chain, payment.authorization, resource.paywallId));
        // Refused before anything was sent, its invoice left bound to the payer's nonce: whoever holds the
        // authorization may still mine it, which pays that invoice, and the same payment sent again here is then
        // served (servedAsUnsentOwed), once. Not recorded, it is refused as a nonce already used, as it was before.
        // Retried as bookkeeping after a send is (settle.ts afterSent), though nothing was sent: the authorization is
        // out of the gateway's hands all the same.
        const { unsentInvoiceId } = settled;
        if (unsentInvoiceId !== undefined) {
          // Nothing of the chain is read for it: sent again, its transfer is searched for from the block verify read
          // its nonce unused at (the simulation's, simulate-batch.ts), whatever was mined since (the mining what made
          // the rail refuse among it). Before, the head read here started that search, and a transfer mined before it
          // was missed. The block is the simulation's, not the balance's: it is kept though the balance was not read
          // (the simulator's UNKNOWN, or its read beside a lone simulation failing).
          await afterSent(
            deps.logger,
            "recording the request of a payment refused before sending owed",
            { payer: payment.payer, invoiceId: unsentInvoiceId },
            () =>
              markUnsentOwed(deps.db, chain, payment.authorization, {
                invoiceId: unsentInvoiceId,
                paywallId: resource.paywallId,
                tenantId: resource.tenantId,
                verifiedBlock: verified.atBlock,
              }),
            "though nothing was sent",
          );
        }
        // Refused as a nonce already used while a request of this authorization is owed here through an invoice the
        // rail still binds to its nonce (an earlier settlement refused before sending: servedAsUnsentOwed): its verify
        // read the nonce unused, the rail then read it used — mined meanwhile by whoever holds it, or verify's node a
        // block behind the rail's — which pays that invoice. Pending, not final: sent again, its nonce reads used and
        // it is served once the watcher has credited the invoice (or refused as used, for a nonce spent otherwise).
        // Before, the payer heard a final refusal, signed a new payment and paid twice. Verify checked its signature.
        let minedMeanwhile = false;
        if (settled.refusal === "invalid_exact_evm_nonce_already_used") {
          try {
            const unsent = await unsentOwedAt(deps.db, chain, payment.authorization, {
              paywallId: resource.paywallId,
              tenantId: resource.tenantId,
            });
            minedMeanwhile = unsent.length > 0;
          } catch (error) {
            // The resource was served: thrown, the payer would hear a 500 without its receipt header. While whether a
            // request is owed through such an invoice is unknown, pending is the safe side: final, the payer who paid
            // it may sign anew and pay twice.
            deps.logger.warn(
              { error, payer: payment.payer },
              "x402: whether a payment refused as used is owed through an invoice still bound is unknown now",
            );
            minedMeanwhile = true;
          }
        }
        const code = minedMeanwhile ? "unexpected_settle_error" : settled.refusal;
        let message = settled.message;
        if (owed)
          message = `${settled.message}: send the same payment again once it is mined, and it is served`;
        if (minedMeanwhile)
          message = `${settled.message}, perhaps by a transfer that pays the request this payment is owed here: send the same payment again shortly, and it is served once that is credited`;
        const failed: SettleResponse = {
          success: false,
          errorReason: code,
          errorMessage: message,
          transaction: "",
          network: requirements.network,
          payer: payment.payer,
        };
        return {
          settled: false as const,
          refusal: { code, message },
          headers: [[receiptHeader, encodeHeader(failed)] as const],
        };
      }
      const receipt: SettleResponse = {
        success: true,
        transaction: settled.transaction,
        network: settled.network,
        payer: settled.payer,
        amount: settled.amount.toString(),
      };
      return {
        settled: true as const,
        headers: [[receiptHeader, encodeHeader(receipt)] as const],
        // Settled, and the answer lost on its way (the payer went away while it settled): owed, as one in flight.
        undelivered: () => markedOwed(chain, payment.authorization, resource.paywallId),
      };
    };
    let completed: ReturnType<Extract<SchemeVerdict, { kind: "paid" }>["complete"]> | null = null;
    return {
      kind: "paid",
      payer: payment.payer,
      complete(outcome) {
        // Once: a second call reports the first outcome.
        completed ??= completeOnce(outcome);
        return completed;
      },
    };
  }
}

/**
 * A value of the payer's JSON, for a message: a string as it is, anything else as JSON (String() of an object whose
 * `toString` is not a function throws: it was a 500), the first 64 characters.
 */
function shown(value: unknown): string {
  const text = typeof value === "string" ? value : (JSON.stringify(value) ?? "nothing");
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/** The requirements the payment answers: v2 by deep equality of `accepted`, v1 by scheme and network. */
function match(
  raw: Record<string, unknown>,
  built: readonly Built[],
): { requirements: PaymentRequirementsV1 | PaymentRequirementsV2 } | Refused {
  if (raw.x402Version === 2) {
    const accepted = raw.accepted;
    const found = built.find((b) => isDeepStrictEqual(accepted, b.v2));
    if (found !== undefined) return { requirements: found.v2 };
    const network = (accepted as { network?: unknown } | null)?.network;
    if (!built.some((b) => b.v2.network === network))
      return refusedWith("invalid_network", `this resource is not paid on ${shown(network)}`);
    return refusedWith(
      "invalid_payment_requirements",
      "accepted is not one of this resource's payment requirements (amount, asset, payTo, extra)",
    );
  }
  if (raw.x402Version === 1) {
    const found = built.find(
      (b) => b.v1 !== null && b.v1.scheme === raw.scheme && b.v1.network === raw.network,
    );
    if (found?.v1 != null) return { requirements: found.v1 };
    return refusedWith(
      "invalid_network",
      `this resource is not paid with ${shown(raw.scheme)} on ${shown(raw.network)}`,
    );
  }
  return refusedWith("invalid_x402_version", "x402Version must be 1 or 2");
}
