// A settlement waits for its transaction to be mined, up to the settler's wait (a minute by default), with nothing
// said on the socket meanwhile; the gateway's server cuts a socket silent for REQUEST_TIMEOUT_MS (30 s by default).
// The routes that answer after a settlement — /v1/paywall_verdicts/:id/complete (a remote paywall's), /v1/x402/settle
// (a facilitator's) and a paywalled route's paid request (the paywall plugin's) — keep their socket open for the
// settlement's wait. Before, the socket was
// destroyed while the settlement went on: the payer was charged, the merchant credited, and the request never served
// (the same payment sent again is refused, its nonce used).
import { x402HTTPClient } from "@x402/fetch";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { remotePaywall, switchyardPaywall } from "../../gateway/paywall/index.ts";
import { type Gateway, officialX402Client, startGateway } from "./support.ts";

// The server's idle timeout, and how long the chain holds a settlement's transaction before mining it: longer.
// Seconds, not less: every other request of the test (a challenge, a verdict, a verification) must answer within it on a
// loaded machine.
const idleTimeoutMs = 3_000;
const minedAfterMs = 5_000;

describe("a settlement that takes longer than the server's idle timeout", () => {
  let gw: Gateway;
  let gatewayUrl: string;
  let shop: FastifyInstance;
  let shopUrl: string;
  let served = 0;

  beforeAll(async () => {
    gw = await startGateway({ REQUEST_TIMEOUT_MS: String(idleTimeoutMs) }, { x402ReceiptTimeoutMs: 20_000 });
    gatewayUrl = await gw.app.server.listen({ port: 0, host: "127.0.0.1" });
    for (const resource of ["/slow", "/facilitated"])
      await gw.x402Paywall(resource, "a report paid while the chain was slow");
    shop = Fastify();
    await shop.register(switchyardPaywall, {
      paywall: remotePaywall({ baseUrl: gatewayUrl, apiKey: gw.key }),
    });
    shop.get("/slow", async () => {
      served += 1;
      return { report: "the goods" };
    });
    shop.get("/facilitated", async () => ({ report: "never served here" }));
    shopUrl = await shop.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await setAutomine(true);
    await shop?.close();
    await gw?.app.close();
  });

  const setAutomine = (on: boolean) => gw?.setAutomine(on);
  /** Runs `sending` while the chain mines nothing for minedAfterMs; then one block is mined and mining goes on. */
  async function minedLate<T>(sending: () => Promise<T>): Promise<T> {
    await setAutomine(false);
    const timer = new Promise<void>((resolve) => setTimeout(resolve, minedAfterMs));
    try {
      const [answer] = await Promise.all([
        sending(),
        timer.then(() => gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never })),
      ]);
      return answer;
    } finally {
      await setAutomine(true);
    }
  }
  /** The demo payer's signed payment of the paywall at `url`: the header, and the payload itself. */
  async function paymentFor(url: string) {
    const client = new x402HTTPClient(officialX402Client(gw));
    const challenge = await fetch(url);
    expect(challenge.status).toBe(402);
    const required = client.getPaymentRequiredResponse(
      (name) => challenge.headers.get(name),
      await challenge.json(),
    );
    const payload = await client.createPaymentPayload(required);
    return { header: client.encodePaymentSignatureHeader(payload), payload };
  }

  it("a remote paywall's paid request is served once its transaction is mined", async () => {
    const { header } = await paymentFor(`${shopUrl}/slow`);
    const answer = await minedLate(() => fetch(`${shopUrl}/slow`, { headers: header }));
    // Before: the gateway cut /complete's socket at its idle timeout, and the shop answered 500.
    expect(answer.status, await answer.clone().text()).toBe(200);
    expect(await answer.json()).toEqual({ report: "the goods" });
    expect(answer.headers.get("payment-response")).not.toBeNull();
    expect(served).toBe(1);
  });

  it("a facilitator's /settle answers success once its transaction is mined", async () => {
    const { payload } = await paymentFor(`${shopUrl}/facilitated`);
    const answer = await minedLate(() =>
      fetch(`${gatewayUrl}/v1/x402/settle`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${gw.key}`,
          "switchyard-account": gw.app.demo!.merchant.id,
          "content-type": "application/json",
        },
        body: JSON.stringify({
          x402Version: 2,
          paymentPayload: payload,
          paymentRequirements: payload.accepted,
        }),
      }),
    );
    // Before: the socket was destroyed at the idle timeout (fetch failed) while the settlement went on.
    expect(answer.status, await answer.clone().text()).toBe(200);
    expect(await answer.json()).toMatchObject({ success: true });
  });

  it("the gateway's own paywalled route (the demo's) serves a paid request once its transaction is mined", async () => {
    const url = `${gatewayUrl}/demo/paid/report`;
    const { header } = await paymentFor(url);
    const answer = await minedLate(() => fetch(url, { headers: header }));
    // Before: the socket was destroyed at the idle timeout while the settlement went on.
    expect(answer.status, await answer.clone().text()).toBe(200);
    expect(answer.headers.get("payment-response")).not.toBeNull();
  });
});
