// wrapFetch: a fetch that answers a 402 by paying it under a policy, once, and retries the request with the proof.
// x402 v2/v1 is signed by the EVM payer (EIP-3009), L402 is paid by the Lightning payer and its token kept per
// scope for the requests after. A 402 to a request that carried a token (its requests used up, as a counted
// token's are: l402_requests_exhausted, or expired) forgets the token and pays that 402's fresh challenge, once;
// concurrent requests to a scope share one payment's token, the request that paid using it first. What a payment
// costs is reserved in the budget before the payer is asked, so concurrent requests cannot together overspend; a
// payer that fails gives its reservation back; an authorization or an invoice handed over stays spent, whatever the
// server answers. A paid L402 token is dropped only when the server refuses it (402, 401): a paid retry that could
// not be sent still leaves its token cached and handed to the requests waiting for it; a cached token answered 401
// is dropped and the request sent again without it. A 402 reached through a redirect to another origin is returned
// unpaid. A payer that may have paid without a usable preimage keeps its payment counted (payment_outcome_unknown).
import { createHash, randomBytes } from "node:crypto";
import { parseBolt11 } from "../../core/bolt11.ts";
import { type Budget, type Reservation, unlimitedReservation } from "./budget.ts";
import {
  BudgetExceededError,
  PayError,
  PayerFailedError,
  PaymentOutcomeUnknownError,
  PaymentRefusedError,
} from "./errors.ts";
import {
  createL402TokenCache,
  type L402Token,
  type L402TokenCache,
  l402Authorization,
  macaroonExpiryMs,
  parseL402Challenge,
} from "./l402.ts";
import type { LightningPayer } from "./payers.ts";
import { type AcceptRule, type Candidate, type Offer, rankOffers } from "./policy.ts";
import {
  bodyReason,
  createX402Payment,
  type EvmPayer,
  parseX402Challenge,
  paymentResponseHeader,
  paymentSignatureHeader,
  readX402Receipt,
  type X402Receipt,
  x402RefusalReason,
  xPaymentHeader,
  xPaymentResponseHeader,
} from "./x402.ts";

/** How many L402 payments of other requests a request waits on; when that many failed, it fails too (payer_failed). */
const otherPaymentWaitsMax = 2;

/** The most of a 402's body read for a challenge or a refusal (bytes). */
export const challengeBodyBytesMax = 65_536;

/** A fetch function: wrapFetch gives it each request, and the caller's signal again (see callerSignals). */
export type FetchLike = (input: Request, init?: { signal?: AbortSignal }) => Promise<Response>;

/** A payment made, after the server answered the paid retry without refusing it. */
export type PaymentRecord = {
  readonly scheme: "x402" | "l402";
  /** The x402 version paid (1 or 2); null for L402. */
  readonly version: 1 | 2 | null;
  readonly url: string;
  /** The budget's asset id (`eip155:…/erc20:0x…`, `lightning:regtest/msat`). */
  readonly asset: string;
  /** What was paid, in the asset's minor units (msat for L402), the Lightning routing fee included. */
  readonly amount: bigint;
  /** x402: the settlement receipt of the answer (PAYMENT-RESPONSE / X-PAYMENT-RESPONSE), when it carried one. */
  readonly receipt: X402Receipt | null;
  readonly status: number;
};

export type WrapFetchOptions = {
  /** What may be paid, most preferred first. An offer no rule names is never paid. */
  readonly accept: readonly AcceptRule[];
  /** Signs x402 payments: viemPayer(account | walletClient), ethersPayer(signer). */
  readonly evm?: EvmPayer;
  /** Pays L402 invoices: lndPayer({ lnd }), weblnPayer(window.webln). */
  readonly lightning?: LightningPayer;
  /** The total that may be spent, per asset (createBudget); absent: only the per-request limits apply. */
  readonly budget?: Budget;
  /** Paid L402 tokens (createL402TokenCache), shared between wrapped fetches if given; default one of its own. */
  readonly l402Tokens?: L402TokenCache;
  /** What a paid L402 token is reused for: the same origin and path (default), or the whole origin. */
  readonly l402Scope?: "path" | "origin";
  /** Told of each payment after the server took it. An exception it throws is not caught. */
  readonly onPayment?: (payment: PaymentRecord) => void;
  /** The clock (ms since the epoch); default Date.now. */
  readonly now?: () => number;
  /** The longest an x402 authorization is valid for (s), below the offer's maxTimeoutSeconds; default 600. */
  readonly x402ValiditySecondsMax?: number;
};

/** Whether the request already carries a payment: it is sent as it is, and a 402 to it is returned, never paid. */
export function carriesPayment(headers: Headers): boolean {
  if (headers.has(paymentSignatureHeader) || headers.has(xPaymentHeader)) return true;
  return /^\s*(l402|lsat)\s/i.test(headers.get("authorization") ?? "");
}

/**
 * `fetch` that pays a 402 by `options` and retries once with the payment. Throws a PayError (its `code` says
 * which) when the 402 is not paid or the paid retry is refused; any other answer is returned as it came.
 */
export function wrapFetch(
  fetch: FetchLike | typeof globalThis.fetch,
  options: WrapFetchOptions,
): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
  // A cap that is not a bigint compares false with every amount (`10n > undefined`, `10n > "1e4"`): checked here, so
  // that a rule written from JavaScript, or from JSON, never turns into "pay any amount".
  for (const rule of options.accept) {
    const cap = rule.scheme === "x402" ? rule.amountMax : rule.amountMsatMax;
    if (typeof cap !== "bigint" || cap < 0n)
      throw new TypeError(
        `wrapFetch: every accept rule needs ${rule.scheme === "x402" ? "amountMax" : "amountMsatMax"} as a bigint of at least 0n, got ${String(cap)}`,
      );
  }
  const send = fetch as FetchLike;
  /**
   * The signal each call was given (its init's, or its Request's), by the Request made of the call's arguments. Every
   * request sent for a call gets it again, as fetch's own `signal`: a Request's clone or copy follows its source's
   * signal only through a WeakRef (nodejs/undici#4068, still in Node 24's fetch), so after a garbage collection an
   * abort of the caller's would not reach the request in flight, and the call would wait for the server's answer
   * (a paid retry held while its payment settles: for as long as that takes).
   */
  const callerSignals = new WeakMap<Request, AbortSignal>();
  const sendAs = (call: Request, outgoing: Request) => {
    const signal = callerSignals.get(call);
    return signal === undefined ? send(outgoing) : send(outgoing, { signal });
  };
  const tokens = options.l402Tokens ?? createL402TokenCache();
  const inFlight = new Map<string, Promise<L402Token>>();
  const now = options.now ?? Date.now;
  const scopeOf = (url: URL) =>
    options.l402Scope === "origin" ? url.origin : `${url.origin}${url.pathname}`;

  return async (input, init) => {
    const request = new Request(input, init);
    // As the Request constructor reads it: init's signal unless undefined (null is none), else the input's.
    const signal = init?.signal !== undefined ? init.signal : input instanceof Request ? input.signal : null;
    if (signal != null) callerSignals.set(request, signal);
    if (carriesPayment(request.headers)) return sendAs(request, request);
    const url = new URL(request.url);
    const scope = scopeOf(url);
    const mayUseL402 = !request.headers.has("authorization");

    let token: L402Token | null = null;
    if (mayUseL402) {
      const pending = inFlight.get(scope);
      if (pending !== undefined) await pending.catch(ignoreOtherRequestsFailure);
      token = tokens.get(scope, now());
    }
    let first = await sendAs(
      request,
      token === null ? request.clone() : withAuthorization(request.clone(), token),
    );
    if (token !== null && first.status === 401) {
      // The server no longer takes the cached token (revoked, or its root key rotated): forgotten, and the request
      // sent once more without it, so that its 402 is paid afresh rather than every request refused until expiry.
      tokens.drop(scope, token);
      token = null;
      first = await sendAs(request, request.clone());
    }
    return answer402({ request, url, scope, mayUseL402, answer: first, token, mayBorrow: true });
  };

  /**
   * A 402 answered: the token it came to (cached or borrowed; a counted one used up, an expired one) forgotten,
   * then its challenge paid by the policy — or, when L402 comes first and this request has not borrowed yet,
   * another request's token to this scope tried instead (cached meanwhile, or being paid). A borrowed token that
   * gets a 402 too is forgotten and that 402's fresh challenge paid: at most one borrowed token and one payment
   * per request.
   */
  async function answer402(attempt: {
    request: Request;
    url: URL;
    scope: string;
    mayUseL402: boolean;
    answer: Response;
    token: L402Token | null;
    mayBorrow: boolean;
  }): Promise<Response> {
    const { request, url, scope, answer, token } = attempt;
    if (answer.status !== 402) return answer;
    // A 402 from another origin than the request's (a redirect followed) is returned unpaid: its payment would be
    // retried at the URL the caller named, whose redirect strips the credential, and a token bought there would be
    // sent to the first origin. Call the URL that answers 402.
    if (answer.redirected && answer.url !== "" && new URL(answer.url).origin !== url.origin) return answer;
    if (token !== null) tokens.drop(scope, token);

    const body = await readBody(answer.clone());
    const offers: Offer[] = [];
    const x402 = parseX402Challenge(answer.headers, body);
    if (x402 !== null) for (const offer of x402.offers) offers.push({ kind: "x402", challenge: x402, offer });
    const l402 = attempt.mayUseL402 ? parseL402Challenge(answer.headers.get("www-authenticate")) : null;
    if (l402 !== null) offers.push({ kind: "l402", challenge: l402 });
    if (x402 === null && l402 === null) return answer;

    const candidates = rankOffers({
      accept: options.accept,
      offers,
      payable: (kind) => (kind === "x402" ? options.evm !== undefined : options.lightning !== undefined),
    });
    if (candidates[0]!.offer.kind === "l402" && attempt.mayBorrow) {
      // Looked for again after each wait, right before paying (no await between the last look and payL402's
      // registration of its payment): requests that waited on a payment that failed pay once between them.
      // At most two waits: the payment this request found in flight, and, when that one failed, the one another
      // waiter began. When both failed, the payer is failing: this request fails too (payer_failed), rather than
      // wait behind every other in turn, or have each of many waiters pay at once when the payer comes back.
      const failed = new Set<Promise<L402Token>>();
      let borrowed: L402Token | null = null;
      for (let waits = 1; ; waits += 1) {
        borrowed = await otherToken(scope, token, failed);
        if (borrowed !== null || !anotherToken(scope, token, failed)) break;
        if (waits >= otherPaymentWaitsMax) break;
      }
      // A request aborted while it waited is not paid for.
      request.signal.throwIfAborted();
      if (borrowed === null && failed.size >= otherPaymentWaitsMax)
        throw new PayerFailedError("The payments of this scope this request waited on failed", {
          details: `${failed.size} payments to ${scope} failed in a row`,
          cause: await [...failed].at(-1)!.then(
            () => null,
            (error: unknown) => error,
          ),
        });
      if (borrowed !== null) {
        const again = await sendAs(request, withAuthorization(request.clone(), borrowed));
        if (again.status === 401) await refuseToken(again, borrowed, scope);
        return answer402({ ...attempt, answer: again, token: borrowed, mayBorrow: false });
      }
    }
    // A request aborted while it waited is not paid for.
    request.signal.throwIfAborted();
    const { candidate, reservation } = reserveFirst(candidates, options);
    if (candidate.offer.kind === "x402")
      return payX402(candidate, candidate.offer, reservation, request, url);
    return payL402(candidate, candidate.offer.challenge, reservation, request, url, scope);
  }

  /**
   * Another request's token to this scope: one cached after `spent` was sent (its 402 was on its way while the
   * other request paid), or the one an L402 payment in flight is buying; null when there is none.
   */
  async function otherToken(
    scope: string,
    spent: L402Token | null,
    failed: Set<Promise<L402Token>>,
  ): Promise<L402Token | null> {
    const cached = tokens.get(scope, now());
    if (cached !== null && cached !== spent) return cached;
    const pending = inFlight.get(scope);
    if (pending === undefined || failed.has(pending)) return null;
    const paid = await pending.then(
      (token) => token,
      () => null,
    );
    if (paid === null) failed.add(pending);
    return paid;
  }

  /** Whether otherToken would find a token, or a payment to wait for, now. */
  function anotherToken(scope: string, spent: L402Token | null, failed: Set<Promise<L402Token>>): boolean {
    const cached = tokens.get(scope, now());
    if (cached !== null && cached !== spent) return true;
    const pending = inFlight.get(scope);
    return pending !== undefined && !failed.has(pending);
  }

  async function payX402(
    candidate: Candidate,
    offer: Extract<Offer, { kind: "x402" }>,
    reservation: Reservation,
    request: Request,
    url: URL,
  ): Promise<Response> {
    let header: { name: string; value: string };
    try {
      header = await createX402Payment({
        payer: options.evm!,
        challenge: offer.challenge,
        offer: offer.offer,
        nowMs: now(),
        nonce: `0x${randomBytes(32).toString("hex")}`,
        ...(options.x402ValiditySecondsMax === undefined
          ? {}
          : { validSecondsMax: options.x402ValiditySecondsMax }),
      });
    } catch (error) {
      reservation.release();
      throw error instanceof PayError
        ? error
        : new PayerFailedError("The EVM payer could not sign the authorization", { cause: error });
    }
    reservation.commit();
    const retry = request.clone();
    retry.headers.set(header.name, header.value);
    retry.headers.set("access-control-expose-headers", `${paymentResponseHeader},${xPaymentResponseHeader}`);
    let answer: Response;
    try {
      answer = await sendAs(request, retry);
    } catch (error) {
      // Sent, and no answer: the payment may settle (a gateway waits for its block). A new request would sign and pay
      // again; the same payment sent again is served once if it settled.
      throw new PaymentOutcomeUnknownError("The request carrying the x402 payment got no answer", {
        cause: error,
        payment: header,
      });
    }
    if (answer.status === 402 || answer.status === 412)
      throw new PaymentRefusedError({
        scheme: `x402 v${offer.offer.version}`,
        status: answer.status,
        reason: x402RefusalReason(answer.headers, await readBody(answer)),
        payment: header,
      });
    options.onPayment?.({
      scheme: "x402",
      version: offer.offer.version,
      url: url.href,
      asset: candidate.asset,
      amount: candidate.amount,
      receipt: readX402Receipt(answer.headers),
      status: answer.status,
    });
    return answer;
  }

  async function payL402(
    candidate: Candidate,
    challenge: Extract<Offer, { kind: "l402" }>["challenge"],
    reservation: Reservation,
    request: Request,
    url: URL,
    scope: string,
  ): Promise<Response> {
    const payer = options.lightning!;
    const feeMsatMax = reservation.amount - candidate.amount;
    let feeMsat = 0n;
    // The request that pays is the token's first use: the requests borrowing it (in flight) and the cache get it
    // only once the server has answered that one, so a token bought for few requests is not used up by others
    // before the request that bought it. A retry that could not be sent (network error, timeout, abort) leaves
    // the token paid for and unrefused: it is published all the same, and the send's error thrown after.
    const paying = (async (): Promise<{ token: L402Token; sent: SendOutcome }> => {
      let paid: { preimage: string; feeMsat: bigint };
      try {
        paid = await payer.payInvoice({
          invoice: challenge.invoice,
          amountMsat: challenge.amountMsat,
          feeMsatMax,
        });
      } catch (error) {
        // A payment that may have left stays counted; only one the payer says failed gives its reservation back.
        if (error instanceof PaymentOutcomeUnknownError) reservation.commit();
        else reservation.release();
        throw error instanceof PayError
          ? error
          : new PayerFailedError("The Lightning payer could not pay the invoice", { cause: error });
      }
      const preimage = preimageOf(paid.preimage, challenge.invoice);
      if (preimage === null) {
        reservation.commit();
        throw new PaymentOutcomeUnknownError("The Lightning payer answered without the invoice's preimage", {
          details: shapeOf(paid.preimage),
        });
      }
      feeMsat = clampMsat(paid.feeMsat, feeMsatMax);
      reservation.commit(candidate.amount + feeMsat);
      const token: L402Token = {
        scheme: challenge.scheme,
        macaroon: challenge.macaroon,
        preimage,
        expiresAtMs: macaroonExpiryMs(challenge.macaroon),
      };
      const sent = await sendOutcome(sendAs(request, withAuthorization(request, token)));
      if ("answer" in sent && (sent.answer.status === 402 || sent.answer.status === 401))
        return refuseToken(sent.answer, token, scope, { paidNow: true });
      tokens.set(scope, token);
      return { token, sent };
    })();
    const shared = paying.then(({ token }) => token);
    shared.catch(ignoreOtherRequestsFailure);
    inFlight.set(scope, shared);
    let sent: SendOutcome;
    try {
      ({ sent } = await paying);
    } finally {
      if (inFlight.get(scope) === shared) inFlight.delete(scope);
    }
    if ("error" in sent) throw sent.error;
    const { answer } = sent;
    options.onPayment?.({
      scheme: "l402",
      version: null,
      url: url.href,
      asset: candidate.asset,
      amount: candidate.amount + feeMsat,
      receipt: null,
      status: answer.status,
    });
    return answer;
  }

  /**
   * A token the server refused (402, 401): forgotten, and PaymentRefusedError thrown with the server's reason. One
   * just paid (its preimage checked against the invoice) and refused as unpaid is kept: the server has not seen the
   * invoice settled yet (its node slow or out of reach), and the next request offers it again rather than paying a
   * new invoice.
   */
  async function refuseToken(
    answer: Response,
    token: L402Token,
    scope: string,
    options: { paidNow?: boolean } = {},
  ): Promise<never> {
    const reason = bodyReason(await readBody(answer));
    if (options.paidNow === true && reason === "l402_invoice_unpaid") tokens.set(scope, token);
    else tokens.drop(scope, token);
    throw new PaymentRefusedError({ scheme: token.scheme, status: answer.status, reason });
  }
}

/**
 * A payer's preimage as 64 lowercase hex digits — given as hex, 0x-prefixed hex or base64 (LND's REST) — when it is
 * the invoice's (its SHA-256 is the invoice's payment hash); null otherwise.
 */
export function preimageOf(given: unknown, invoice: string): string | null {
  if (typeof given !== "string") return null;
  const text = given.startsWith("0x") ? given.slice(2) : given;
  let bytes: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(text)) bytes = Buffer.from(text, "hex");
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(given)) bytes = Buffer.from(given, "base64");
  if (bytes === null || bytes.length !== 32) return null;
  const parsed = parseBolt11(invoice);
  if (!parsed.ok || createHash("sha256").update(bytes).digest("hex") !== parsed.value.paymentHash)
    return null;
  return bytes.toString("hex");
}

/** What a value that should have been a preimage looked like, without the value (it may be a secret after all). */
function shapeOf(value: unknown): string {
  return typeof value === "string" ? `a string of ${value.length} characters` : `a ${typeof value}`;
}

/** A request sent: the server's answer, or what the fetch threw (network error, timeout, abort). */
type SendOutcome = { readonly answer: Response } | { readonly error: unknown };

async function sendOutcome(sending: Promise<Response>): Promise<SendOutcome> {
  try {
    return { answer: await sending };
  } catch (error) {
    return { error };
  }
}

/** The first candidate the budget covers, reserved (with the Lightning payer's fee ceiling on top of the amount). */
function reserveFirst(
  candidates: readonly Candidate[],
  options: WrapFetchOptions,
): { candidate: Candidate; reservation: Reservation } {
  let refused: BudgetExceededError | null = null;
  for (const candidate of candidates) {
    const fee =
      candidate.offer.kind === "l402" ? (options.lightning?.feeMsatMax(candidate.amount) ?? 0n) : 0n;
    const total = candidate.amount + (fee > 0n ? fee : 0n);
    if (options.budget === undefined)
      return { candidate, reservation: unlimitedReservation(candidate.asset, total) };
    try {
      return { candidate, reservation: options.budget.reserve(candidate.asset, total) };
    } catch (error) {
      if (!(error instanceof BudgetExceededError)) throw error;
      refused ??= error;
    }
  }
  throw refused!;
}

/** A fee as reported, within [0, max]: a payer cannot spend more of the budget than it reserved. */
function clampMsat(feeMsat: bigint, max: bigint): bigint {
  if (feeMsat < 0n) return 0n;
  return feeMsat > max ? max : feeMsat;
}

function withAuthorization(request: Request, token: L402Token): Request {
  request.headers.set("authorization", l402Authorization(token));
  return request;
}

/** Another request's L402 payment failed: this one goes on and pays for itself if it must. */
function ignoreOtherRequestsFailure(): void {}

/** A response's body as text, at most challengeBodyBytesMax bytes; null when it has none or is longer. */
async function readBody(response: Response): Promise<string | null> {
  if (response.body === null) return null;
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > challengeBodyBytesMax) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}
