// The LNURL-pay client against a local HTTP server that misbehaves: every way a server can fail is the
// address's failure, a value, never a throw; nothing but an invoice of exactly the amount that commits to the pay
// request comes back.

import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bolt11Field, bytesToWords, signBolt11 } from "../../test/support/bolt11.ts";
import { invoiceForAddress, type LnurlParams } from "./lnurl.ts";

let server: Server;
let host = "";
let handler: (request: IncomingMessage, response: ServerResponse) => void = () => {};

beforeAll(async () => {
  server = createServer((request, response) => handler(request, response));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const params: LnurlParams = {
  httpHosts: ["127.0.0.1"],
  timeoutMs: 500,
  bodyBytesMax: 1_024,
  // The client's own checks, on the platform's fetch (the gateway's egress guard: gateway/app/lnurl-egress.test.ts).
  fetch: (url, init) => fetch(url, { ...init, redirect: "manual" }),
};

const payRequest = (overrides: Record<string, unknown> = {}) =>
  JSON.stringify({
    tag: "payRequest",
    callback: `http://${host}/callback`,
    minSendable: 1_000,
    maxSendable: 1_000_000,
    metadata: '[["text/plain","x"]]',
    ...overrides,
  });

function serve(pay: string, callback: string | null = null) {
  handler = (request, response) => {
    response.setHeader("content-type", "application/json");
    response.end(request.url?.startsWith("/.well-known/lnurlp/") ? pay : (callback ?? "{}"));
  };
}

describe("invoiceForAddress", () => {
  it("refuses what is not a Lightning Address without asking anyone", async () => {
    handler = () => {
      throw new Error("asked");
    };
    expect(await invoiceForAddress("not an address", 1_000n, params)).toMatchObject({
      ok: false,
      code: "unreachable_destination",
    });
  });

  it("an address whose domain and port make no URL is refused as a value, without asking anyone (it threw)", async () => {
    handler = () => {
      throw new Error("asked");
    };
    for (const address of ["a@example.com:99999", "a@example.123", "a@256.0.0.1"])
      expect(await invoiceForAddress(address, 1_000n, params), address).toMatchObject({
        ok: false,
        code: "unreachable_destination",
      });
  });

  it("an amount outside the pay request's range is refused before the callback", async () => {
    serve(payRequest());
    expect(await invoiceForAddress(`a@${host}`, 10n, params)).toMatchObject({ ok: false, code: "rejected" });
    expect(await invoiceForAddress(`a@${host}`, 2_000_000n, params)).toMatchObject({
      ok: false,
      code: "rejected",
    });
  });

  it("a server that is slow, too large (declared or streamed), not JSON, not a pay request, or redirects is the address's failure", async () => {
    const cases: Array<(request: IncomingMessage, response: ServerResponse) => void> = [
      () => {}, // never answers
      (_, response) => response.end("x".repeat(4_096)),
      (_, response) => {
        // Streams past the bound and never ends: read up to the bound, then dropped.
        response.write("x".repeat(800));
        response.write("x".repeat(800));
      },
      (_, response) => response.end("<html>"),
      (_, response) => response.end(JSON.stringify({ tag: "withdrawRequest" })),
      (_, response) => {
        response.statusCode = 302;
        response.setHeader("location", "http://127.0.0.1:1/elsewhere");
        response.end();
      },
    ];
    for (const answer of cases) {
      handler = answer;
      const result = await invoiceForAddress(`a@${host}`, 1_000n, params);
      expect(result).toMatchObject({ ok: false, code: "unreachable_destination", retryElsewhere: true });
    }
  });

  it("a callback on another host must be https unless that host is allowed plain http", async () => {
    serve(payRequest({ callback: "http://pay.example.com/callback" }));
    expect(await invoiceForAddress(`a@${host}`, 1_000n, params)).toMatchObject({
      ok: false,
      code: "unreachable_destination",
      message: expect.stringContaining("not https"),
    });
  });

  it("a host not allowed plain http is asked over https", async () => {
    let asked = false;
    handler = (_, response) => {
      asked = true;
      response.end(payRequest());
    };
    const result = await invoiceForAddress(`a@localhost:${host.split(":")[1]}`, 1_000n, params);
    expect(result.ok).toBe(false);
    expect(asked).toBe(false); // a TLS hello to a plain http server is no request
  });

  it("an error the callback reports, or an invoice that is not one, is refused", async () => {
    serve(payRequest(), JSON.stringify({ status: "ERROR", reason: "no more invoices today" }));
    expect(await invoiceForAddress(`a@${host}`, 1_000n, params)).toMatchObject({
      ok: false,
      message: expect.stringContaining("no more invoices today"),
    });
    serve(payRequest(), JSON.stringify({ pr: "lnbc-not-an-invoice" }));
    expect(await invoiceForAddress(`a@${host}`, 1_000n, params)).toMatchObject({
      ok: false,
      code: "rejected",
    });
  });

  it("gives the invoice bare and in lower case: a lightning: prefix (any case) taken off, mixed case refused", async () => {
    const metadata = '[["text/plain","x"]]';
    const invoice = signBolt11({
      network: "bcrt",
      amount: "10n", // 1 000 msat
      timestampSeconds: 1_700_000_000,
      fields: [
        [bolt11Field.paymentHash, bytesToWords(Buffer.alloc(32, 5))],
        [bolt11Field.descriptionHash, bytesToWords(createHash("sha256").update(metadata, "utf8").digest())],
      ],
      privateKey: Buffer.alloc(32, 6),
    });
    for (const pr of [
      invoice,
      invoice.toUpperCase(),
      `lightning:${invoice}`,
      `LIGHTNING:${invoice.toUpperCase()}`,
    ]) {
      serve(payRequest({ metadata }), JSON.stringify({ pr }));
      expect(await invoiceForAddress(`a@${host}`, 1_000n, params)).toEqual({ ok: true, invoice });
    }
    const mixed = `${invoice.slice(0, 20).toUpperCase()}${invoice.slice(20)}`;
    serve(payRequest({ metadata }), JSON.stringify({ pr: `lightning:${mixed}` }));
    expect(await invoiceForAddress(`a@${host}`, 1_000n, params)).toMatchObject({
      ok: false,
      code: "rejected",
    });
  });
});
