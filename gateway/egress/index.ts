// The egress guard: every URL the gateway sends to on a tenant's behalf (webhook endpoints, Lightning Addresses'
// LNURL servers) reaches a public address, vetted when it is registered and again on every connection.
export { type AddressRange, type AddressVerdict, classifyAddress } from "./address.ts";
export {
  createEgress,
  dnsResolver,
  type Egress,
  type EgressInit,
  type EgressLimits,
  type EgressParams,
  type EgressPost,
  EgressRefusedError,
  egressLimitsDefault,
  type Resolver,
  resolveVetted,
  systemResolver,
  vetRegistration,
} from "./fetch.ts";
export {
  type EgressMode,
  type EgressPolicy,
  type EgressRefusal,
  egressUrlLengthMax,
  hostOf,
  isAllowedHost,
  type UrlVerdict,
  vetUrl,
} from "./url.ts";
