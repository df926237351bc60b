// The boundary between the paywall and the ways to pay it. The paywall (core.ts) knows priced resources, locks a
// rate, and answers one 402 that offers every configured way at once; each way (x402 in gateway/x402, L402 in
// gateway/l402) knows only its own headers, its own proof and its own settlement. Nothing here imports either.
import { type Asset, basisPointsTotal, divFloor } from "../../core/index.ts";

/** A request as the paywall sees it, framework-free: Fastify, Express or a plain Node handler can each make one. */
export type PaywallRequest = {
  readonly method: string;
  /** The absolute URL the client asked for (x402 v1 needs an absolute `resource`). */
  readonly url: string;
  /** Lower-case names; a repeated header as an array. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /**
   * Node's raw header list, name and value alternating, when the framework has it: Node keeps only the first
   * `Authorization` in `headers`, and Aperture-family clients send `LSAT …` before `L402 …`.
   */
  readonly rawHeaders?: readonly string[];
};

/** The priced resource a request falls under, as a scheme needs it. */
export type PricedResource = {
  readonly tenantId: string;
  readonly paywallId: string;
  /** The account credited with what is paid (after the split, when the paywall has one). */
  readonly accountId: string;
  /** A short name for the service (the L402 `services` caveat; the x402 description). */
  readonly service: string;
  readonly description: string;
  readonly mimeType: string;
  /**
   * Shares of what is paid that go to other accounts of the tenant (in the paid asset), applied by whoever credits
   * the payment (the scheme, when it settles): `splitShares` says how much each gets. Absent or empty: all to
   * `accountId`.
   */
  readonly split?: readonly { readonly accountId: string; readonly basisPoints: number }[];
  /**
   * For schemes whose credential is reused (L402): how long a token opens the resource, and for how many requests
   * (null: any number until it expires).
   */
  readonly credential?: { readonly lifetimeSeconds: number; readonly requestsMax: number | null };
};

/**
 * Who gets what of `amount` (minor units) paid for `resource`: each split share floored (amount × bps / 10,000), the
 * rest (including every rounding remainder) to `resource.accountId`, listed first. The amounts sum to `amount`;
 * a zero share is left out.
 */
export function splitShares(
  amount: bigint,
  resource: Pick<PricedResource, "accountId" | "split">,
): { accountId: string; amount: bigint }[] {
  const shares = (resource.split ?? []).map((share) => ({
    accountId: share.accountId,
    amount: divFloor(amount * BigInt(share.basisPoints), basisPointsTotal),
  }));
  const rest = amount - shares.reduce((sum, share) => sum + share.amount, 0n);
  return [{ accountId: resource.accountId, amount: rest }, ...shares].filter((share) => share.amount > 0n);
}

/**
 * The price in the scheme's own asset, converted by the paywall at a rate it locked for this challenge: a scheme
 * never converts. `amount` is in `asset`'s minor units.
 */
export type SchemePrice = { readonly asset: Asset; readonly amount: bigint };

/** A header to set on the answer; a scheme may set the same name more than once (two WWW-Authenticate lines). */
export type HeaderLine = readonly [name: string, value: string];

/** One scheme's part of the shared 402. `body` fields are merged into the JSON body (x402 v1 puts its offer there). */
export type ChallengePart = {
  readonly headers: readonly HeaderLine[];
  readonly body?: Readonly<Record<string, unknown>>;
  /**
   * The scheme could make no way to pay now (its rail out of reach, the provider refusing): the part offers nothing,
   * its body only says why. A paywall none of whose parts offers anything answers 503 with Retry-After, not a 402 a
   * client cannot pay (an L402 client reads a 402 without WWW-Authenticate as no challenge at all).
   */
  readonly unavailable?: boolean;
};

/** Why a presented payment was not taken: a stable code the 402's body carries, and words for a person. */
export type PaymentRefusal = { readonly code: string; readonly message: string };

/**
 * What a scheme says about a request that carries its credential:
 * - `paid`: serve it. `payer` names who paid (an address, a node, a token id). `complete` runs after the handler:
 *   with `served: true` when the handler succeeded (x402 settles, or queues settlement, then returns its receipt
 *   headers), with `served: false` when it failed (nothing is settled; an L402 request count is given back).
 *   A `complete` that fails answers `settled: false` and the paywall discards the handler's answer for a 402.
 * - `refused`: a 402 again, with a fresh challenge and `refusal` in the body; nothing credited, nothing settled.
 */
export type SchemeVerdict =
  | {
      readonly kind: "paid";
      readonly payer: string;
      complete(outcome: { served: boolean }): Promise<
        | {
            settled: true;
            headers: readonly HeaderLine[];
            /**
             * The answer never reached the payer (it went away while its payment settled): the same payment sent
             * again is served once (x402: the request owed; L402: the token's request given back). True once that
             * is recorded. Never rejects.
             */
            undelivered?: () => Promise<boolean>;
          }
        | { settled: false; refusal: PaymentRefusal; headers: readonly HeaderLine[] }
      >;
    }
  | { readonly kind: "refused"; readonly refusal: PaymentRefusal };

export interface PaymentScheme {
  /** `x402` or `l402`: the name a paywall lists in its `schemes`. */
  readonly id: string;
  /** The asset this scheme is paid in on `rail` (USDC on an EVM chain, BTC on Lightning). */
  assetFor(rail: string): Asset | null;
  /** Whether the request carries this scheme's credential (a payment header, an Authorization scheme). */
  carries(request: PaywallRequest): boolean;
  /** This scheme's part of the 402 for `resource` at `price`, on the rails the paywall offers for it. */
  challenge(
    resource: PricedResource,
    offers: readonly { rail: string; price: SchemePrice }[],
    request: PaywallRequest,
  ): Promise<ChallengePart>;
  /**
   * Why no challenge on `rail` could ever ask for `price` with `credential`'s terms (more than its rail takes in one
   * payment: an L402 token's price × its requests), in words; null when one can. Asked when a paywall is made or
   * changed, so that such a paywall is refused then rather than answered 503 at every request.
   */
  termsRefusal?(rail: string, price: SchemePrice, credential: PricedResource["credential"]): string | null;
  /**
   * For a scheme whose credential was paid for when it was bought (an L402 token): checks it on those rails without
   * a price. The paywall asks this when it has no rate to price the resource now, so that a stale rate refuses only
   * payments still to be made, not tokens already paid.
   */
  verifyPrepaid?(
    resource: PricedResource,
    rails: readonly string[],
    request: PaywallRequest,
  ): Promise<SchemeVerdict>;
  /** Checks the credential the request carries against what `resource` costs on those rails. */
  verify(
    resource: PricedResource,
    offers: readonly { rail: string; price: SchemePrice }[],
    request: PaywallRequest,
  ): Promise<SchemeVerdict>;
  /** Gives back what the scheme holds for this process (leased L402 requests), once the paywalls are closed. */
  close?(): Promise<void>;
}
