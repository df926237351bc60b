// What the gateway asks for: the `exact` scheme's requirements on a chain, in v2 and (where the chain has a v1
// name) v1. A pure function of the chain, its token's domain, the amount and the resource, so the 402 and the
// paid retry build the same object: v2 clients echo it as `accepted`, which is matched by deep equality.
import { getAddress } from "viem";
import { caip2Of, type TokenDomainExtra, v1NetworkOf, type X402Chain } from "./chains.ts";
import type { PaymentRequirementsV1, PaymentRequirementsV2 } from "./schemas.ts";

/** How long a payer's authorization is asked to stay valid (clients sign validBefore = now + this). */
export const maxTimeoutSecondsDefault = 300;

export const exactScheme = "exact";

export function requirementsV2(
  chain: X402Chain,
  domain: TokenDomainExtra,
  amount: bigint,
): PaymentRequirementsV2 {
  return {
    scheme: exactScheme,
    network: caip2Of(chain.chainId),
    amount: amount.toString(),
    asset: getAddress(chain.token),
    payTo: getAddress(chain.hotWallet),
    maxTimeoutSeconds: maxTimeoutSecondsDefault,
    extra: { name: domain.name, version: domain.version },
  };
}

/** The v1 requirements, or null on a chain v1 has no name for. */
export function requirementsV1(
  chain: X402Chain,
  domain: TokenDomainExtra,
  amount: bigint,
  resource: { url: string; description: string; mimeType: string },
): PaymentRequirementsV1 | null {
  const network = v1NetworkOf(chain.chainId);
  if (network === null) return null;
  return {
    scheme: exactScheme,
    network,
    maxAmountRequired: amount.toString(),
    resource: resource.url,
    description: resource.description,
    mimeType: resource.mimeType,
    payTo: getAddress(chain.hotWallet),
    maxTimeoutSeconds: maxTimeoutSecondsDefault,
    asset: getAddress(chain.token),
    extra: { name: domain.name, version: domain.version },
  };
}
