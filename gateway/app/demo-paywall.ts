// Development only: the demo tenant's paywall on a resource the gateway itself serves (GET /demo/paid/<name>,
// outside /v1 and the OpenAPI document), so that `npm start` prints a 402 to look at and a command that pays it.
// The paywall — 1 cent (USD) a request, x402 on the first EVM rail credited to the demo merchant, and L402 on
// Lightning credited to the demo BTC account when that rail runs — is created once per database; at a later start
// it is kept, its offers brought in line with the rails of this start.
import type { FastifyInstance } from "fastify";
import { assets } from "../../core/index.ts";
import {
  addPaywall,
  type Paywall,
  type PaywallCheck,
  type PaywallOffer,
  type PaywallsDeps,
  switchyardPaywall,
  tenantPaywalls,
  updatePaywall,
} from "../paywall/index.ts";
import { DemoSetupError, type DemoTenant } from "./demo.ts";

/** The demo paywall's resource: every path under it is paid. */
export const demoPaywallResource = "/demo/paid/*";
/** The path `npm start` prints. */
export const demoPaidPath = "/demo/paid/report";
/** 1 cent (USD minor units), converted at the paywall's locked rate into what each offer is paid in. */
export const demoPaywallPriceUsdCents = 1n;

export type DemoPaywall = { paywall: Paywall; path: string };

/** The demo tenant's paywall, created once per database; null when no scheme can be paid on this start's rails. */
export async function ensureDemoPaywall(
  deps: Omit<PaywallsDeps, "nowMs"> & { nowMs?: () => number },
  demo: DemoTenant,
): Promise<DemoPaywall | null> {
  const paywallsDeps: PaywallsDeps = { ...deps, nowMs: deps.nowMs ?? Date.now };
  const wanted: { offer: PaywallOffer; account: string }[] = [
    { offer: { scheme: "x402", rail: "evm" }, account: demo.merchant.id },
    { offer: { scheme: "l402", rail: "lightning" }, account: demo.btc.id },
  ].filter(({ offer }) =>
    deps.schemes.some((scheme) => scheme.id === offer.scheme && scheme.assetFor(offer.rail) !== null),
  );
  if (wanted.length === 0) return null;
  const fields = {
    offers: wanted.map(({ offer }) => offer),
    accountIds: wanted.map(({ account }) => account),
  };
  const existing = async () =>
    (await tenantPaywalls(deps.sql, { tenantId: demo.tenantId })).find(
      (paywall) => paywall.resource === demoPaywallResource,
    ) ?? null;
  const found = await existing();
  const sameOffers = (paywall: Paywall) => JSON.stringify(paywall.offers) === JSON.stringify(fields.offers);
  const result =
    found === null
      ? await addPaywall(paywallsDeps, {
          tenantId: demo.tenantId,
          fields: {
            resource: demoPaywallResource,
            description: "The demo's paid resource",
            mimeType: "application/json",
            price: { asset: assets.USD, amount: demoPaywallPriceUsdCents },
            ...fields,
            split: [],
            tokenLifetimeSeconds: 3_600,
            tokenRequestsMax: null,
            metadata: { demo: "true" },
          },
        })
      : sameOffers(found)
        ? { ok: true as const, paywall: found }
        : await updatePaywall(paywallsDeps, { tenantId: demo.tenantId, id: found.id, fields });
  if (!result.ok)
    throw new DemoSetupError(`the demo paywall: ${result.message}`, { details: result.refusal });
  return { paywall: result.paywall, path: demoPaidPath };
}

/** GET /demo/paid/<name> behind the demo tenant's paywall, in a context of its own (hidden from the OpenAPI document). */
export async function registerDemoPaywallRoutes(
  server: FastifyInstance,
  options: { paywall: PaywallCheck },
): Promise<void> {
  await server.register(async (scope) => {
    await scope.register(switchyardPaywall, { paywall: options.paywall, preflightRoutes: true });
    scope.get<{ Params: { name: string } }>(
      "/demo/paid/:name",
      { schema: { hide: true } },
      async (request) => ({
        resource: request.params.name,
        content: "the paid content of the demo",
      }),
    );
  });
}
