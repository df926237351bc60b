// L402 (Lightning HTTP 402): macaroons bound to the gateway's own invoices, as Aperture lays them out.
export { caveatServiceName, judgeCaveats, mintCaveats } from "./caveats.ts";
export { carriesL402, challengeLines, credentialLimits, parseCredentials } from "./header.ts";
export { decodeIdentifier, encodeIdentifier, type L402Identifier, rootKeyId } from "./identifier.ts";
export { attenuateMacaroon, macaroonCaveatsMax, mintMacaroon, readMacaroon } from "./macaroon.ts";
export {
  createL402Scheme,
  L402Error,
  type L402RefusalCode,
  type L402SchemeDeps,
  type L402SchemeLimits,
  l402SchemeDefaults,
} from "./scheme.ts";
export {
  invoicesKnownLagMsMax,
  invoicesKnownRecordEveryMs,
  l402TokenGraceMs,
  l402TokenPruneBatchMax,
  l402TokenPruneEveryMs,
  pruneL402Tokens,
  recordInvoicesKnown,
  revokeToken,
  startInvoicesKnownRecord,
  startL402TokenPrune,
} from "./tokens.ts";
