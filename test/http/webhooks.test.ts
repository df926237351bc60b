// Events reach the tenant's endpoint signed, are retried with backoff after a failure, and are delivered once
// a receiver has said 2xx.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../gateway/app.ts";
import {
  deliverOutbox,
  signatureHeader,
  verifyDelivery,
  webhookLimitsDefault,
} from "../../gateway/webhooks/index.ts";
import { typedClient } from "../support/api.ts";
import { testConfig } from "../support/config.ts";
import { errorOf } from "./support.ts";

type Received = { body: string; signature: string };
let app: App;
let receiver: Server;
let url: string;
const received: Received[] = [];
let failNext = 0;

beforeAll(async () => {
  app = await createApp(
    testConfig({
      LOG_LEVEL: "silent",
      WEBHOOK_DELIVERY_INTERVAL_MS: "3600000",
      EGRESS_ALLOW_HOSTS: "127.0.0.1",
    }),
  );
  receiver = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8");
    });
    request.on("end", () => {
      received.push({ body, signature: String(request.headers[signatureHeader]) });
      response.statusCode = failNext > 0 ? 500 : 204;
      failNext = Math.max(0, failNext - 1);
      response.end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
});
afterAll(async () => {
  await app?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

describe("webhook delivery", () => {
  it("delivers a payment's event signed, retries after a failure, and then stops", async () => {
    const endpoint = await typedClient(app).POST("/v1/webhook_endpoints", { body: { url } });
    expect(endpoint.response.status).toBe(201);
    expect(endpoint.data!.secret).toMatch(/^whsec_/);
    const payment = await typedClient(app).POST("/v1/payments", {
      body: {
        amount: "0.10",
        asset: "USDC",
        source: { account: "acct_demo_customer" },
        destination: { type: "account", account: "acct_demo_merchant" },
      },
    });
    expect(payment.response.status).toBe(201);

    failNext = 1;
    const deps = { db: app.db, limits: { ...webhookLimitsDefault, backoffBaseMs: 0 }, nowMs: Date.now };
    expect(await deliverOutbox(deps)).toMatchObject({ claimed: 1, delivered: 0, retried: 1 });
    expect(await deliverOutbox(deps)).toMatchObject({ claimed: 1, delivered: 1 });
    expect(await deliverOutbox(deps)).toMatchObject({ claimed: 0 });

    expect(received).toHaveLength(2);
    const [first, second] = received;
    expect(second!.body).toBe(first!.body); // the same event, with the same id, again
    const event = JSON.parse(second!.body);
    expect(event).toMatchObject({ object: "event", type: "payment.succeeded" });
    // The payment's facts ride along, as GET /v1/events/:id shows them (the delivery reads through the events view).
    expect(event.data.object).toEqual({
      payment_id: payment.data!.id,
      status: "succeeded",
      asset: "USDC",
      amount: "100000",
      source_account: "acct_demo_customer",
      rail: payment.data!.rail,
    });
    const nowSeconds = Math.floor(Date.now() / 1000);
    expect(
      verifyDelivery({
        secret: endpoint.data!.secret!,
        body: second!.body,
        header: second!.signature,
        nowSeconds,
        toleranceSeconds: 300,
      }),
    ).toBe(true);
    expect(
      verifyDelivery({
        secret: "whsec_other",
        body: second!.body,
        header: second!.signature,
        nowSeconds,
        toleranceSeconds: 300,
      }),
    ).toBe(false);
    // During a rotation a delivery carries a signature per secret: either secret verifies it. Before: only the last.
    const rotating = `${second!.signature},v1=${"ab".repeat(32)}`;
    for (const header of [
      rotating,
      `t=${second!.signature.split(",")[0]!.slice(2)},v1=${"ab".repeat(32)},${second!.signature.split(",")[1]!}`,
    ])
      expect(
        verifyDelivery({
          secret: endpoint.data!.secret!,
          body: second!.body,
          header,
          nowSeconds,
          toleranceSeconds: 300,
        }),
      ).toBe(true);
    expect(
      verifyDelivery({
        secret: endpoint.data!.secret!,
        body: `${second!.body} `,
        header: second!.signature,
        nowSeconds,
        toleranceSeconds: 300,
      }),
    ).toBe(false);
  });

  it("refuses an endpoint that is not an http(s) URL", async () => {
    const response = await typedClient(app).POST("/v1/webhook_endpoints", { body: { url: "ftp://example" } });
    expect(response.response.status).toBe(400);
    expect(errorOf(response).code).toBe("parameter_invalid");
  });
});
