// Two rate sources through the whole gateway: the development chain's ETH price feed ($3,000) and an HTTP source over
// a local server (RATES_HTTP_URL). Further apart than RATES_DISAGREEMENT_MAX_BPS, neither prices ETH: the EVM rail,
// whose gas is paid in it, is left out as disputed_rate, and a payout to an address is refused with nothing
// written but its answer under its Idempotency-Key, its route saying why. Once the two agree again, it pays.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RatesServer, startRatesServer } from "../support/rates-server.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

let server: RatesServer;
let gw: TestGateway;

beforeAll(async () => {
  server = await startRatesServer({ ETH: "3000.00" });
  gw = await startTestGateway({
    database: "pglite",
    // Refreshed by the test alone: a background refresh in flight, joined, might have read the rates before a change.
    env: { RATES_HTTP_URL: server.url, RATES_DISAGREEMENT_MAX_BPS: "200", RATES_REFRESH_MS: "3600000" },
  });
}, 120_000);
afterAll(async () => {
  await gw?.app.close();
  await server?.close();
});

const payout = () =>
  gw.client.POST("/v1/payments", {
    body: {
      amount: "1.00",
      asset: "USDC",
      source: { account: gw.app.demo!.customer.id },
      destination: { type: "evm_address", address: gw.app.demo!.payee! },
    },
  });

/** Every table's rows, digested, but the Idempotency-Keys': a refusal's answer is kept under its key, as Stripe keeps it. */
const writtenTables = async () => {
  const { idempotency_keys: _kept, ...rest } = await gw.tableDigests();
  return rest;
};

describe("a price feed and an HTTP source that disagree on ETH", () => {
  it("leave the EVM rail out as disputed_rate, writing nothing, until they agree again", async () => {
    expect(gw.app.rates.rateStatus("ETH")).toBe("fresh");
    const agreed = await payout();
    expect(agreed.data).toMatchObject({ status: "succeeded", rail: "evm" });

    server.rates = { ETH: "2900.00" }; // 3.4 % under the feed: more than the 2 % allowed
    await gw.app.rates.refresh();
    expect(gw.app.rates.rateStatus("ETH")).toBe("disputed");
    // The market's snapshot is taken anew within its interval: the refusal comes once it has seen the dispute.
    await expect
      .poll(
        async () => {
          const answer = await payout();
          return answer.response.status === 201 ? "paid" : errorOf(answer).code;
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe("no_route");
    const before = await writtenTables();
    const refused = await payout();
    expect(errorOf(refused)).toMatchObject({ code: "no_route" });
    expect(errorOf(refused).route.excluded).toContainEqual({
      rail: "evm",
      reason: "disputed_rate",
      detail: "the USD rate sources of the native asset ETH disagree: neither rate is used",
    });
    expect(await writtenTables()).toEqual(before);

    server.rates = { ETH: "3030.00" }; // 1 % over: they agree
    await gw.app.rates.refresh();
    expect(gw.app.rates.rateStatus("ETH")).toBe("fresh");
    await expect
      .poll(async () => (await payout()).data?.status, { timeout: 10_000, interval: 200 })
      .toBe("succeeded");
  });
});
