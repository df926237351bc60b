// Which of a 402's offers to pay: the policy's rules in order of preference, each naming a scheme, a network and
// an asset with the most one request may cost in it. Pure: offers in, ranked candidates (or the reason there are
// none) out; the budget is wrapFetch's next step.
import { AmountOverLimitError, NoAcceptableOfferError } from "./errors.ts";
import { type L402Challenge, type LightningNetwork, lightningAssetId } from "./l402.ts";
import { describeOffer, unpayableReason, type X402Challenge, type X402Offer, x402AssetId } from "./x402.ts";

export type X402Rule = {
  readonly scheme: "x402";
  /** CAIP-2 (`eip155:8453`); a v1 offer's network name is matched by its chain id. */
  readonly network: string;
  /** The token's address. */
  readonly asset: string;
  /** The most one request may cost, in the token's minor units. */
  readonly amountMax: bigint;
  /** The x402 versions to pay; default both. */
  readonly versions?: readonly (1 | 2)[];
};

export type L402Rule = {
  readonly scheme: "l402";
  readonly network: LightningNetwork;
  /** The most one request may cost, in millisatoshis (the invoice's amount; the routing fee is the payer's). */
  readonly amountMsatMax: bigint;
};

export type AcceptRule = X402Rule | L402Rule;

export type Offer =
  | { readonly kind: "x402"; readonly challenge: X402Challenge; readonly offer: X402Offer }
  | { readonly kind: "l402"; readonly challenge: L402Challenge };

export type Candidate = { readonly offer: Offer; readonly asset: string; readonly amount: bigint };

function describe(offer: Offer): string {
  return offer.kind === "x402"
    ? describeOffer(offer.offer)
    : `l402 ${offer.challenge.network} ${offer.challenge.amountMsat} msat`;
}

function matches(rule: AcceptRule, offer: Offer): boolean {
  if (rule.scheme === "l402") return offer.kind === "l402" && offer.challenge.network === rule.network;
  if (offer.kind !== "x402") return false;
  const x = offer.offer;
  return (
    unpayableReason(x) === null &&
    x.caip2 === rule.network &&
    x.asset.toLowerCase() === rule.asset.toLowerCase() &&
    (rule.versions ?? [1, 2]).includes(x.version)
  );
}

/**
 * The offers the policy accepts and can pay (`payable` says whether a payer for the kind is there), in the
 * rules' order, each at most its rule's limit. None matching: NoAcceptableOfferError; all matching ones over
 * their limits: AmountOverLimitError for the most preferred.
 */
export function rankOffers(params: {
  accept: readonly AcceptRule[];
  offers: readonly Offer[];
  payable: (kind: Offer["kind"]) => boolean;
}): Candidate[] {
  const candidates: Candidate[] = [];
  let overLimit: AmountOverLimitError | null = null;
  const taken = new Set<Offer>();
  for (const rule of params.accept) {
    for (const offer of params.offers) {
      if (taken.has(offer) || !params.payable(offer.kind) || !matches(rule, offer)) continue;
      taken.add(offer);
      const amount = offer.kind === "x402" ? offer.offer.amount : offer.challenge.amountMsat;
      const asset =
        offer.kind === "x402"
          ? x402AssetId(offer.offer.caip2!, offer.offer.asset)
          : lightningAssetId(offer.challenge.network);
      const amountMax = rule.scheme === "x402" ? rule.amountMax : rule.amountMsatMax;
      if (amount > amountMax) {
        overLimit ??= new AmountOverLimitError({ asset, amount, amountMax });
        continue;
      }
      candidates.push({ offer, asset, amount });
    }
  }
  if (candidates.length > 0) return candidates;
  if (overLimit !== null) throw overLimit;
  throw new NoAcceptableOfferError(
    params.offers.map((offer) => {
      const reason = offer.kind === "x402" ? unpayableReason(offer.offer) : null;
      const payer = params.payable(offer.kind) ? "" : " (no payer)";
      return `${describe(offer)}${reason === null ? "" : ` (${reason})`}${payer}`;
    }),
  );
}
