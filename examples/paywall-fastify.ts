// A tenant's own API behind Switchyard's paywall: GET /hello is free, GET /reports/<name> is paid at the price
// of the tenant's paywall on `/reports/*`. The verdict comes from a Switchyard over HTTP (remotePaywall); an app
// that runs Switchyard in its own process passes `app.paywalls.forTenant(tenantId)` instead.
//
//   # once, in Switchyard: price the resource (x402 on the EVM rail, L402 on Lightning, 1 cent a request)
//   curl -X POST $SWITCHYARD_URL/v1/paywalls -H "Authorization: Bearer $SWITCHYARD_API_KEY" \
//     -H "Idempotency-Key: $(uuidgen)" -H "Content-Type: application/json" \
//     -d '{"resource":"/reports/*","price":{"amount":"0.01","asset":"USD"},
//          "offers":[{"scheme":"x402","rail":"evm"},{"scheme":"l402","rail":"lightning"}],
//          "accounts":["acct_…usdc","acct_…btc"]}'
//   # then
//   SWITCHYARD_URL=http://127.0.0.1:3000 SWITCHYARD_API_KEY=sk_test_… PORT=4000 npx node examples/paywall-fastify.ts
import Fastify, { type FastifyInstance } from "fastify";
import { type PaywallCheck, remotePaywall, switchyardPaywall } from "../gateway/paywall/index.ts";

export async function buildExampleApp(options: {
  paywall: PaywallCheck;
  /** The origin clients use, for the absolute resource URL in the 402 (default: the request's Host). */
  publicOrigin?: string;
}): Promise<FastifyInstance> {
  const app = Fastify({ requestTimeout: 30_000 });
  await app.register(switchyardPaywall, {
    paywall: options.paywall,
    ...(options.publicOrigin === undefined ? {} : { publicOrigin: options.publicOrigin }),
  });
  app.get("/hello", async () => ({ hello: "free for everyone" }));
  app.get<{ Params: { name: string } }>("/reports/:name", async (request) => ({
    report: request.params.name,
    body: "the paid content",
  }));
  return app;
}

if (import.meta.main) {
  const baseUrl = process.env.SWITCHYARD_URL ?? "http://127.0.0.1:3000";
  const apiKey = process.env.SWITCHYARD_API_KEY;
  if (apiKey === undefined) {
    console.error("SWITCHYARD_API_KEY is required (a key with the invoices scope)");
    process.exit(2);
  }
  const app = await buildExampleApp({ paywall: remotePaywall({ baseUrl, apiKey }) });
  const address = await app.listen({ port: Number(process.env.PORT ?? 4000), host: "127.0.0.1" });
  console.log(`example shop on ${address}: GET /hello (free), GET /reports/<name> (paid)`);
}
