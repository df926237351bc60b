// x402 (coinbase/x402, the x402 Foundation): the `exact` EVM scheme for the paywall, and Switchyard as a facilitator.
export {
  type ChainRegistry,
  caip2Of,
  createChainRegistry,
  type TokenDomainExtra,
  v1NetworkOf,
  type X402Chain,
} from "./chains.ts";
export {
  decodeHeader,
  encodeHeader,
  paymentHeaderBytesMax,
  paymentHeaderNames,
  paymentHeaderOf,
  receiptHeaderNames,
  requiredHeaderName,
} from "./codec.ts";
export {
  checkPayment,
  type FacilitatorRequest,
  facilitatorSettle,
  facilitatorSupported,
  facilitatorVerify,
  type X402Deps,
} from "./facilitator.ts";
export {
  type ReconcileCounts,
  type ReconcileDeps,
  type ReconcileSettings,
  reconcileDefaults,
  reconcileX402,
  startX402Reconcile,
  x402ReconcileEveryMs,
} from "./reconcile.ts";
export { type Refused, type X402Refusal, x402Refusals } from "./refusals.ts";
export { exactScheme, maxTimeoutSecondsDefault, requirementsV1, requirementsV2 } from "./requirements.ts";
export {
  exactEvmPayload,
  facilitatorRequest,
  type PaymentPayload,
  type PaymentRequiredV1,
  type PaymentRequiredV2,
  type PaymentRequirementsV1,
  type PaymentRequirementsV2,
  paymentPayload,
  paymentRequiredV1,
  paymentRequiredV2,
  paymentRequirementsV1,
  paymentRequirementsV2,
  type SettleResponse,
  type SupportedResponse,
  settleResponse,
  supportedResponse,
  type VerifyResponse,
  verifyResponse,
} from "./schemas.ts";
export { createX402Scheme } from "./scheme.ts";
export {
  type ClaimedPayment,
  createSingleSettler,
  type SettleResult,
  type SingleSettlerDeps,
  type X402Settler,
} from "./settle.ts";
export { type CreditTarget, claim, isClaimed, release } from "./store.ts";
export {
  type Eip3009Authorization,
  type ExactRequirements,
  parsePayment,
  transferArgs,
  transferTypedData,
  type VerifiedPayment,
  validBeforeMarginS,
  verifyExact,
  vrsOf,
} from "./verify.ts";

import type { Logger } from "../../core/index.ts";
import type { Db } from "../db/index.ts";
import type { SettlementDeps } from "../settlement/index.ts";
import { createChainRegistry, type X402Chain } from "./chains.ts";
import type { X402Deps } from "./facilitator.ts";
import { createSingleSettler, type X402Settler } from "./settle.ts";

/** x402's dependencies from the composition root's parts; the single settler unless another is given. */
export function createX402Deps(params: {
  db: Db;
  settlement: SettlementDeps;
  chains: readonly X402Chain[];
  logger: Logger;
  settler?: X402Settler;
  nowMs?: () => number;
}): X402Deps {
  const nowMs = params.nowMs ?? Date.now;
  return {
    db: params.db,
    settlement: params.settlement,
    chains: createChainRegistry(params.chains),
    settler:
      params.settler ?? createSingleSettler({ settlement: params.settlement, logger: params.logger, nowMs }),
    nowMs,
    logger: params.logger,
  };
}
