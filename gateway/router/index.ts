// The router: pure and synchronous. route() ranks the rails for one payment; the rest is the cost
// model's helpers, learning (success window, circuit breaker), quotes and netting.
export { type PreparedSnapshot, prepareSnapshot } from "./prepare.ts";
export { failureCostMicroUsdDefault, feeHeadroomBpsDefault, RouterInputError, route } from "./route.ts";
export type {
  Candidate,
  CircuitState,
  CostBreakdown,
  Destination,
  DestinationKind,
  Exclusion,
  ExclusionReason,
  FxRate,
  NetworkFeeModel,
  PaymentIntent,
  RailKind,
  RailSnapshot,
  RouteDecision,
  RoutePolicy,
  Snapshot,
  UsdRate,
} from "./types.ts";
