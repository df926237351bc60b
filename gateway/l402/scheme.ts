// L402 as one of the paywall's ways to pay (gateway/paywall/scheme.ts). A challenge is an invoice made the way
// the gateway makes every invoice (settlement/invoices.ts createInvoice on the Lightning rail, into the paywall's
// account: its payment is booked in the ledger with the preimage as evidence, with its events and receipt) and a
// macaroon bound to the invoice's payment hash. A credential serves when, in this order:
//   it reads (l402_malformed) → its root key is here, for this tenant (l402_unknown_token) → the HMAC chain over
//   every presented caveat ends in its signature (l402_signature_invalid) → sha256(preimage) is the identifier's
//   payment hash (l402_preimage_mismatch) → it was minted for this paywall and its caveats hold
//   (l402_caveat_invalid, l402_service_mismatch, l402_expired, l402_path_mismatch) → its invoice is paid here
//   (l402_invoice_unpaid: booked as paid, or else LND's one lookup of the invoice says settled — never a wait)
//   → a request is left on its count (l402_requests_exhausted).
// A refusal is a 402 again with a fresh challenge (Aperture's choice, so that lnget and lsat-js pay again).
import { createHash, randomBytes } from "node:crypto";
import { type Asset, amountMax, formatAmount, SwitchyardError, setBounded } from "../../core/index.ts";
import { pathOf } from "../paywall/core.ts";
import type {
  ChallengePart,
  PaymentRefusal,
  PaymentScheme,
  PaywallRequest,
  PricedResource,
  SchemePrice,
  SchemeVerdict,
} from "../paywall/scheme.ts";
import { createInvoice, type SettlementDeps } from "../settlement/index.ts";
import {
  type CaveatJudgement,
  caveatServiceName,
  judgeCaveats,
  mintCaveats,
  readCondition,
  tokenRequestsMaxLimit,
} from "./caveats.ts";
import { createRequestCounter, type RequestCounterLimits } from "./counter.ts";
import { authorizationValues, carriesL402, challengeLines, parseCredentials } from "./header.ts";
import { decodeIdentifier, encodeIdentifier, type L402Identifier, rootKeyId } from "./identifier.ts";
import { mintMacaroon, type PresentedMacaroon, readMacaroon } from "./macaroon.ts";
import { insertToken, readToken, type StoredToken } from "./tokens.ts";

export type L402RefusalCode =
  | "l402_malformed"
  | "l402_not_offered"
  | "l402_unknown_token"
  | "l402_signature_invalid"
  | "l402_preimage_mismatch"
  | "l402_caveat_invalid"
  | "l402_service_mismatch"
  | "l402_expired"
  | "l402_path_mismatch"
  | "l402_invoice_unpaid"
  | "l402_requests_exhausted";

export type L402SchemeLimits = {
  /**
   * How many requests one token opens when the paywall does not say (its `credential`); null: any number until it
   * expires, as Aperture's tokens.
   */
  tokenRequestsMax: number | null;
  /** How long a token opens the resource after its challenge when the paywall does not say. */
  tokenLifetimeSeconds: number;
  /** How long the invoice can be paid: at most half the token's lifetime, which runs from the challenge. */
  invoiceExpirySeconds: number;
  /** Tokens whose root key and paid invoice this process remembers, so that reuse costs one statement. */
  tokenMemoryEntriesMax: number;
};

export const l402SchemeDefaults: L402SchemeLimits = {
  tokenRequestsMax: null,
  tokenLifetimeSeconds: 3600,
  invoiceExpirySeconds: 600,
  tokenMemoryEntriesMax: 10_000,
};

export type L402SchemeDeps = {
  /** Where invoices are made and their payments booked; its `db` keeps the tokens. */
  settlement: SettlementDeps;
  /** The rail the invoices are made on (default "lightning"): its railReference is the payment hash. */
  rail?: string;
  nowMs?: () => number;
  limits?: Partial<L402SchemeLimits>;
  /** How requests are counted against tokens (counter.ts: leases). */
  counting?: Partial<RequestCounterLimits>;
};

export class L402Error extends SwitchyardError {
  override name = "L402Error";
}

const refused = (code: L402RefusalCode, message: string): SchemeVerdict => ({
  kind: "refused",
  refusal: { code, message } satisfies PaymentRefusal,
});

const hex32 = /^[0-9a-f]{64}$/;

/** The largest macaroon remembered once read (a minted one with a few appended caveats is far smaller). */
const memorableMacaroonBytesMax = 1_024;

/**
 * What a token costs: the paywall's price is a price per request, so a counted token prepays its requests (price ×
 * requestsMax); an uncounted one (Aperture's kind, any number of requests until it expires) costs the price once.
 */
export function tokenPrice(pricePerRequest: bigint, requestsMax: number | null): bigint {
  return requestsMax === null ? pricePerRequest : pricePerRequest * BigInt(requestsMax);
}

/** Remembers tokens whose invoice is paid (fields that never change); the oldest is forgotten beyond the max. */
function createTokenMemory(entriesMax: number) {
  const tokens = new Map<string, StoredToken>();
  const name = (tenantId: string, keyId: string) => `${tenantId}:${keyId}`;
  return {
    recall: (tenantId: string, keyId: string) => tokens.get(name(tenantId, keyId)),
    remember(token: StoredToken) {
      if (entriesMax > 0) setBounded(tokens, name(token.tenantId, token.keyId), token, entriesMax);
    },
    forget: (tenantId: string, keyId: string) => tokens.delete(name(tenantId, keyId)),
  };
}

type ReadMacaroon = { macaroon: PresentedMacaroon; identifier: L402Identifier } | null;

/**
 * Macaroons read before, by their bytes' digest, so that a reused token is parsed and its HMAC chain computed once:
 * the bytes fix the caveats and the signature, so a chain that verified under a root key verifies again. The oldest
 * is forgotten beyond the max.
 */
function createMacaroonMemory(entriesMax: number) {
  const read = new Map<string, { macaroon: PresentedMacaroon; identifier: L402Identifier }>();
  return (bytes: Uint8Array): ReadMacaroon => {
    // Filled before any check, from anyone's header: keyed by a digest, only macaroons that read, only small ones.
    const memorable = entriesMax > 0 && bytes.byteLength <= memorableMacaroonBytesMax;
    const name = memorable ? createHash("sha256").update(bytes).digest("base64") : "";
    const known = memorable ? read.get(name) : undefined;
    if (known !== undefined) return known;
    const macaroon = readMacaroon(bytes);
    const identifier = macaroon === null ? null : decodeIdentifier(macaroon.identifier);
    if (macaroon === null || identifier === null) return null;
    const entry = { macaroon: verifiedOnce(macaroon), identifier };
    if (memorable) setBounded(read, name, entry, entriesMax);
    return entry;
  };
}

/** Judgements kept per presented caveat list (a remembered macaroon's), per service, path and bound. */
const judgements = new WeakMap<
  readonly string[],
  Map<string, { judged: CaveatJudgement; untilMs: number }>
>();
/** The most (service, path, bound) judgements kept for one caveat list. */
const judgementsPerMacaroonMax = 16;

/**
 * judgeCaveats, remembered for a caveat list while its verdict cannot change: an accepting judgement until the
 * earliest expiry among its caveats (time is the only input that moves). Refusals are judged afresh.
 */
function judgeRemembered(
  conditions: readonly string[],
  request: { service: string; path: string; nowMs: number; requestsMax: number | null },
): CaveatJudgement {
  const name = `${request.service}\u0000${request.path}\u0000${request.requestsMax}`;
  const known = judgements.get(conditions)?.get(name);
  if (known !== undefined && request.nowMs < known.untilMs) return known.judged;
  const judged = judgeCaveats(conditions, request);
  if (!judged.ok) return judged;
  // Read as judgeCaveats reads a condition (readCondition), so no expiry it judged is missed here.
  const expiryKey = `${caveatServiceName(request.service)}_valid_until`;
  let untilMs = Number.POSITIVE_INFINITY;
  for (const condition of conditions) {
    const read = readCondition(condition);
    if (read?.key === expiryKey) untilMs = Math.min(untilMs, Number(read.value) * 1000);
  }
  if (!(untilMs > request.nowMs)) return judged;
  let kept = judgements.get(conditions);
  if (kept === undefined) {
    kept = new Map();
    judgements.set(conditions, kept);
  }
  if (kept.size >= judgementsPerMacaroonMax) kept.clear();
  kept.set(name, { judged, untilMs });
  return judged;
}

/** The macaroon with its last root key's verdict kept (a token's root key does not change while it lives). */
function verifiedOnce(macaroon: PresentedMacaroon): PresentedMacaroon {
  let last: { rootKey: string; verifies: boolean } | null = null;
  return {
    ...macaroon,
    verifies(rootKey) {
      const key = Buffer.from(rootKey).toString("hex");
      if (last?.rootKey !== key) last = { rootKey: key, verifies: macaroon.verifies(rootKey) };
      return last.verifies;
    },
  };
}

type Presented =
  | {
      ok: true;
      macaroon: PresentedMacaroon;
      identifier: L402Identifier;
      preimage: string;
      /** sha256(preimage) is the identifier's payment hash. */
      preimagePays: boolean;
      /** The token's key: sha256 of the identifier. */
      keyId: string;
    }
  | { ok: false; message: string };

/** The longest Authorization (all values joined) whose reading is remembered, and how many are (about 2 MB). */
const memorableAuthorizationMax = 2_048;
const presentedRememberedMax = 1_000;

/**
 * presentedToken, remembered by the Authorization values themselves (they fix the reading, the macaroon's chain of
 * caveats and the preimage's hash), so that a token presented again costs one lookup; only values that read, and of
 * at most memorableAuthorizationMax characters. The oldest is forgotten beyond `entriesMax`.
 */
function createPresentedMemory(entriesMax: number, read: (bytes: Uint8Array) => ReadMacaroon) {
  const known = new Map<string, Presented>();
  return (request: PaywallRequest): Presented => {
    const values = authorizationValues(request);
    const name = values.length === 1 ? values[0]! : values.join("\n");
    const memorable = entriesMax > 0 && name.length <= memorableAuthorizationMax;
    const remembered = memorable ? known.get(name) : undefined;
    if (remembered !== undefined) return remembered;
    const presented = presentedToken(request, read);
    if (memorable && presented.ok) setBounded(known, name, presented, entriesMax);
    return presented;
  };
}

/** The first presented macaroon that carries an L402 version-0 identifier, with the preimage sent beside it. */
function presentedToken(request: PaywallRequest, read: (bytes: Uint8Array) => ReadMacaroon): Presented {
  const parsed = parseCredentials(request);
  if (parsed.kind === "none") return { ok: false, message: "no L402 credential in Authorization" };
  if (parsed.kind === "malformed") return { ok: false, message: parsed.message };
  for (const credential of parsed.credentials)
    for (const bytes of credential.macaroons) {
      const entry = read(bytes);
      if (entry !== null) {
        const hash = createHash("sha256").update(Buffer.from(credential.preimage, "hex")).digest("hex");
        return {
          ok: true,
          ...entry,
          preimage: credential.preimage,
          preimagePays: hash === entry.identifier.paymentHash,
          keyId: rootKeyId(entry.macaroon.identifier),
        };
      }
    }
  return { ok: false, message: "no V2 macaroon with an L402 identifier in the credential" };
}

export function createL402Scheme(deps: L402SchemeDeps): PaymentScheme {
  const rail = deps.rail ?? "lightning";
  const limits: L402SchemeLimits = { ...l402SchemeDefaults, ...deps.limits };
  const nowMs = deps.nowMs ?? Date.now;
  const db = deps.settlement.db;
  const memory = createTokenMemory(limits.tokenMemoryEntriesMax);
  const readPresented = createPresentedMemory(
    Math.min(limits.tokenMemoryEntriesMax, presentedRememberedMax),
    createMacaroonMemory(limits.tokenMemoryEntriesMax),
  );
  // Requests are counted in the token's row before they are served: concurrent ones by one statement (group
  // commit), most of them from a lease that statement took (counter.ts).
  const counter = createRequestCounter({
    db,
    ...(deps.counting === undefined ? {} : { limits: deps.counting }),
    nowMs,
  });

  const assetFor = (id: string): Asset | null =>
    id === rail ? (deps.settlement.rails.get(id)?.asset ?? null) : null;

  /**
   * Whether a token's invoice, not booked as paid yet, was paid: the payer has the preimage the moment LND
   * settles, a few milliseconds before the gateway books the payment. One lookup of the invoice on the rail
   * (bounded by the rail's own timeout), never a wait: a rail without a lookup, or one that fails, says unpaid.
   */
  async function paidOnRail(token: StoredToken): Promise<boolean> {
    const lookup = deps.settlement.rails.get(rail)?.lookupReceived;
    if (lookup === undefined) return false;
    try {
      return await lookup(token.paymentHash);
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      return false;
    }
  }

  async function challenge(
    resource: PricedResource,
    offers: readonly { rail: string; price: SchemePrice }[],
    request: PaywallRequest,
  ): Promise<ChallengePart> {
    const offer = offers.find((o) => o.rail === rail);
    if (offer === undefined) return { headers: [], unavailable: true };
    const asset = assetFor(rail);
    if (asset === null || offer.price.asset.code !== asset.code)
      throw new L402Error(`an L402 price must be in ${asset?.code ?? "the rail's asset"} on ${rail}`, {
        details: offer.price.asset.code,
      });
    const { requestsMax, lifetimeSeconds } = tokenTerms(resource);
    const created = await createInvoice(deps.settlement, {
      tenantId: resource.tenantId,
      accountId: resource.accountId,
      asset: asset.code,
      ...(resource.split === undefined ? {} : { split: resource.split }),
      amount: formatAmount(tokenPrice(offer.price.amount, requestsMax), asset),
      rail,
      description: `${resource.service}: ${requestsMax ?? "any number of"} request(s) for ${lifetimeSeconds} s`,
      // Payable for at most half the token's lifetime (which runs from this challenge): a token of 120 s behind an
      // invoice of 600 s could be paid after it had expired, the payment taken and the resource never opened.
      expirySeconds: Math.min(limits.invoiceExpirySeconds, Math.max(1, Math.floor(lifetimeSeconds / 2))),
    });
    // No invoice (the rail is unreachable, the amount out of its range): the 402 offers the other ways, or, when
    // there are none, the paywall answers 503.
    if (!created.ok)
      return {
        headers: [],
        body: { l402: { unavailable: created.refusal, message: created.message } },
        unavailable: true,
      };
    const { invoice } = created;
    const paymentHash = invoice.railReference ?? "";
    const bolt11 = invoice.instructions.bolt11 ?? "";
    if (!hex32.test(paymentHash) || bolt11.length === 0)
      throw new L402Error(`rail ${rail} answered an invoice without a payment hash and a BOLT11 request`, {
        details: invoice.id,
      });
    const identifier = encodeIdentifier({ paymentHash, tokenId: randomBytes(32).toString("hex") });
    const rootKey = new Uint8Array(randomBytes(32));
    const validUntilSeconds = Math.floor(nowMs() / 1000) + lifetimeSeconds;
    await insertToken(db, {
      keyId: rootKeyId(identifier),
      tenantId: resource.tenantId,
      rootKey,
      paymentHash,
      invoiceId: invoice.id,
      paywallId: resource.paywallId,
      service: resource.service,
      requestsMax,
      validUntil: new Date(validUntilSeconds * 1000),
    });
    const macaroon = mintMacaroon({
      identifier,
      rootKey,
      caveats: mintCaveats({
        service: resource.service,
        validUntilSeconds,
        path: pathOf(request.url),
        requestsMax,
      }),
    });
    return { headers: challengeLines({ macaroon, invoice: bolt11 }) };
  }

  /**
   * The most a challenge's invoice can be, as createInvoice bounds it: what an amount can be, and within that what
   * the rail takes in one payment (its snapshot's amountMax: a Lightning invoice's ceiling).
   */
  function invoiceAmountMax(): bigint {
    const railMax = deps.settlement.rails.get(rail)?.snapshot?.().amountMax;
    return railMax !== undefined && railMax < amountMax ? railMax : amountMax;
  }

  /**
   * A token no invoice can be made for: its price (tokenPrice, as a challenge computes it) above invoiceAmountMax.
   * Before, such a paywall was taken and every challenge of it failed (amount_too_large): 503 for good.
   */
  function termsRefusal(
    offered: string,
    price: SchemePrice,
    credential: PricedResource["credential"],
  ): string | null {
    if (offered !== rail) return null;
    const requestsMax = credential !== undefined ? credential.requestsMax : limits.tokenRequestsMax;
    const amount = tokenPrice(price.amount, requestsMax);
    const most = invoiceAmountMax();
    if (amount <= most) return null;
    const cost =
      requestsMax === null
        ? `${amount} ${price.asset.code} minor units`
        : `${requestsMax} × ${price.amount} = ${amount} ${price.asset.code} minor units`;
    return `a token costs ${cost}, above the ${most} one invoice on ${rail} can be`;
  }

  /** What a token opens: the paywall's terms (its `credential`), else this scheme's defaults. */
  function tokenTerms(resource: PricedResource): { requestsMax: number | null; lifetimeSeconds: number } {
    const requestsMax =
      resource.credential !== undefined ? resource.credential.requestsMax : limits.tokenRequestsMax;
    const lifetimeSeconds = resource.credential?.lifetimeSeconds ?? limits.tokenLifetimeSeconds;
    if (
      (requestsMax !== null &&
        (!Number.isSafeInteger(requestsMax) || requestsMax < 1 || requestsMax > tokenRequestsMaxLimit)) ||
      !Number.isSafeInteger(lifetimeSeconds) ||
      lifetimeSeconds < 1
    )
      throw new L402Error("an L402 token's terms are out of range", {
        details: `${requestsMax} requests, ${lifetimeSeconds} s`,
      });
    return { requestsMax, lifetimeSeconds };
  }

  /** A token is paid for when it is bought: what the resource costs now does not enter into it. */
  async function verifyPrepaid(
    resource: PricedResource,
    rails: readonly string[],
    request: PaywallRequest,
  ): Promise<SchemeVerdict> {
    const presented = readPresented(request);
    if (!presented.ok) return refused("l402_malformed", presented.message);
    if (!rails.includes(rail)) return refused("l402_not_offered", `${rail} is not offered here`);
    const { macaroon, identifier, preimagePays, keyId } = presented;
    // First what costs nothing and needs no secret: a copied token whose invoice was not paid is refused before a
    // read of the database or its HMAC chain. (An identifier made up around a hash of one's own passes this and
    // costs a lookup; what bounds the chain it may carry is macaroonCaveatsMax.)
    if (!preimagePays) return refused("l402_preimage_mismatch", "the preimage is not the token's invoice's");
    const { tenantId } = resource;
    const stored = memory.recall(tenantId, keyId) ?? (await readToken(db, { tenantId, keyId }));
    if (stored === null)
      return refused("l402_unknown_token", "no such token here (never issued, or revoked)");
    if (!macaroon.verifies(stored.rootKey))
      return refused("l402_signature_invalid", "the macaroon's signature does not match its caveats");
    if (stored.paywallId !== resource.paywallId)
      return refused("l402_service_mismatch", "the token was bought for another paywall");
    const judged = judgeRemembered(macaroon.conditions, {
      service: resource.service,
      path: pathOf(request.url),
      nowMs: nowMs(),
      requestsMax: stored.requestsMax,
    });
    if (!judged.ok) return refused(judged.code, judged.message);
    if (!stored.invoicePaid && !(await paidOnRail(stored)))
      return refused("l402_invoice_unpaid", `invoice ${stored.invoiceId} is not paid`);
    // Paid on the rail: its booking follows from the rail's event (the ledger's evidence), this answer does not wait.
    if (!stored.invoicePaid) memory.remember({ ...stored, invoicePaid: true });
    else if (memory.recall(tenantId, keyId) !== stored) memory.remember(stored);
    // judged.requestsMax is at most the row's own (a caveat only tightens) and within the column's range.
    const taken = await counter.take({
      tenantId,
      keyId,
      requestsMax: judged.requestsMax,
      rowRequestsMax: stored.requestsMax,
    });
    if (!taken.ok) {
      if (taken.reason === "revoked") {
        memory.forget(tenantId, keyId);
        return refused("l402_unknown_token", "the token was revoked");
      }
      return refused("l402_requests_exhausted", "the token's requests are used up");
    }
    let completed = false;
    let givenBack = false;
    const giveBack = async () => {
      if (givenBack) return;
      givenBack = true;
      await counter.giveBack({ tenantId, keyId });
    };
    return {
      kind: "paid",
      payer: identifier.tokenId,
      async complete({ served }) {
        if (!served && !completed) await giveBack();
        completed = true;
        // Served, but the answer never reached the payer: its request is given back, so the token serves it again
        // (a token of one request was used up by an answer nobody read).
        if (!served) return { settled: true, headers: [] };
        return {
          settled: true,
          headers: [],
          undelivered: async () => {
            await giveBack();
            return true;
          },
        };
      },
    };
  }

  return {
    id: "l402",
    assetFor,
    carries: carriesL402,
    challenge,
    termsRefusal,
    verifyPrepaid,
    verify: (resource, offers, request) =>
      verifyPrepaid(
        resource,
        offers.map((offer) => offer.rail),
        request,
      ),
    close: () => counter.close(),
  };
}
