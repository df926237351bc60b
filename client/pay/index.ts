// The payer SDK: `wrapFetch(fetch, options)` answers a 402 with x402 v2, x402 v1 or L402 under a policy (what to
// accept, most preferred first, with a limit per request), a total budget and a cache of L402 tokens.
//
//   const paidFetch = wrapFetch(fetch, {
//     accept: [{ scheme: "x402", network: "eip155:8453", asset: usdc, amountMax: 10_000n }],
//     evm: viemPayer(privateKeyToAccount(key)),              // or ethersPayer(signer)
//     budget: createBudget({ [x402AssetId("eip155:8453", usdc)]: 1_000_000n }),
//   });
//   const response = await paidFetch("https://api.example/report");
//
// A 402 that is not paid, or a paid retry the server refuses, throws a PayError whose `code` is one of
// budget_exceeded, amount_over_limit, no_acceptable_offer, payment_refused, malformed_challenge, payer_failed,
// payment_outcome_unknown.
export { type Budget, createBudget, type Reservation } from "./budget.ts";
export {
  AmountOverLimitError,
  BudgetExceededError,
  MalformedChallengeError,
  NoAcceptableOfferError,
  PayError,
  type PayErrorCode,
  PayerFailedError,
  PaymentOutcomeUnknownError,
  PaymentRefusedError,
} from "./errors.ts";
export {
  carriesPayment,
  challengeBodyBytesMax,
  type FetchLike,
  type PaymentRecord,
  type WrapFetchOptions,
  wrapFetch,
} from "./fetch.ts";
export {
  createL402TokenCache,
  type L402Challenge,
  type L402Token,
  type L402TokenCache,
  type LightningNetwork,
  lightningAssetId,
  macaroonExpiryMs,
  parseL402Challenge,
  readBolt11,
} from "./l402.ts";
export { type LndPayerParams, lndFeeMsatMaxDefault, lndPayer } from "./lnd.ts";
export {
  type EvmPayer,
  ethersPayer,
  type LightningPayer,
  viemPayer,
  type WebLnProvider,
  weblnPayer,
} from "./payers.ts";
export type { AcceptRule, L402Rule, X402Rule } from "./policy.ts";
export {
  parseX402Challenge,
  readX402Receipt,
  validSecondsMaxDefault,
  type X402Challenge,
  type X402Offer,
  type X402Receipt,
  x402AssetId,
} from "./x402.ts";
