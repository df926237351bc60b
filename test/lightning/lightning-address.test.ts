// Paying a Lightning Address through the gateway: a local LNURL-pay server (LUD-06/16) answers for alice@127.0.0.1
// with invoices created on the payee's node that commit to its metadata; the gateway asks it for an invoice of the
// amount and pays that invoice once. A server whose invoice asks another amount, or does not commit to the pay
// request, is refused before LND sees anything.
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { authenticatedLndGrpc, createInvoice, getInvoice, getPayments } from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { App } from "../../gateway/app.ts";
import { apiClient } from "../support/api.ts";
import { btcAccount, startLightningGateway } from "../support/lightning-gateway.ts";

const cluster = inject("lightningCluster");
const payer = authenticatedLndGrpc(cluster.nodes.payer).lnd;
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
const gatewayNode = authenticatedLndGrpc(cluster.nodes.gateway).lnd;
const accountId = "acct_lnaddr_btc";
let app: App;
let gateway: Awaited<ReturnType<typeof startLightningGateway>>;
let server: Server;
let host = "";
const callbacks: { user: string; amount: string; invoiceId: string }[] = [];

const metadataOf = (user: string) => JSON.stringify([["text/plain", `pay ${user}`]]);

/** alice: an honest server. greedy: its invoices ask 1 msat more. forgetful: its invoices commit to nothing. */
async function answer(url: URL): Promise<unknown> {
  const wellKnown = /^\/\.well-known\/lnurlp\/([a-z]+)$/.exec(url.pathname);
  if (wellKnown !== null) {
    const user = wellKnown[1]!;
    return {
      tag: "payRequest",
      callback: `http://${host}/callback/${user}`,
      minSendable: 1_000,
      maxSendable: 100_000_000,
      metadata: metadataOf(user),
    };
  }
  const callback = /^\/callback\/([a-z]+)$/.exec(url.pathname);
  if (callback === null) return { status: "ERROR", reason: "not found" };
  const user = callback[1]!;
  if (user === "closed") return { status: "ERROR", reason: `closed${String.fromCharCode(0)}for now` };
  const amount = BigInt(url.searchParams.get("amount") ?? "0");
  const invoice = await createInvoice({
    lnd: payee,
    mtokens: String(user === "greedy" ? amount + 1n : amount),
    ...(user === "forgetful"
      ? { description: "nothing" }
      : { description_hash: createHash("sha256").update(metadataOf(user)).digest("hex") }),
  });
  callbacks.push({ user, amount: amount.toString(), invoiceId: invoice.id });
  return { pr: invoice.request, routes: [] };
}

beforeAll(async () => {
  server = createServer((request, response) => {
    void answer(new URL(request.url ?? "/", "http://localhost")).then((body) => {
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  gateway = await startLightningGateway(cluster, { LIGHTNING_ADDRESS_HTTP_HOSTS: "127.0.0.1" });
  app = gateway.app;
  await btcAccount(app, { id: accountId, funding: { amount: "0.0001", payer } });
});
afterAll(async () => {
  await gateway?.close();
  await new Promise<void>((resolve) => server?.close(() => resolve()));
});

const call = (method: "GET" | "POST", url: string, body?: unknown) => apiClient(app)(method, url, body);

const payAddress = (user: string) =>
  call("POST", "/v1/payments", {
    amount: "0.00002",
    asset: "BTC",
    source: { account: accountId },
    destination: { type: "lightning_address", address: `${user}@${host}` },
  });

describe("a Lightning Address through the gateway", () => {
  it("asks its LNURL-pay server for an invoice of the amount and pays it once", async () => {
    const askedBefore = callbacks.length; // the payee test asks alice too, in whatever order they run
    const response = await payAddress("alice");
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "lightning" });
    const asked = callbacks.slice(askedBefore);
    expect(asked).toEqual([{ user: "alice", amount: "2000000", invoiceId: expect.any(String) }]);
    expect(response.body.attempts[0].evidence.payment_hash).toBe(asked[0]!.invoiceId);
    expect((await getInvoice({ lnd: payee, id: asked[0]!.invoiceId })).is_confirmed).toBe(true);
  });

  it("a payee whose method is a Lightning Address is paid the same way", async () => {
    const created = await call("POST", "/v1/payees", {
      name: "Alice",
      methods: [{ type: "lightning_address", address: `alice@${host}` }],
    });
    const response = await call("POST", "/v1/payments", {
      amount: "0.00001",
      asset: "BTC",
      source: { account: accountId },
      destination: { type: "payee", payee: created.body.id },
    });
    expect(response.status).toBe(201);
    expect(response.body.route.candidates[0].destination).toEqual({
      type: "lightning_address",
      address: `alice@${host}`,
    });
    expect(response.body.status).toBe("succeeded");
  });

  it("an invoice of another amount, or one that does not commit to the pay request, is refused unsent", async () => {
    const sentBefore = (await getPayments({ lnd: gatewayNode })).payments.length;
    for (const user of ["greedy", "forgetful"]) {
      const response = await payAddress(user);
      expect(response.status).toBe(402);
      expect(response.body.error.code).toBe("rejected");
      expect(response.body.error.payment.status).toBe("failed");
    }
    expect((await getPayments({ lnd: gatewayNode })).payments.length).toBe(sentBefore);
  });

  it("a server's reason holding a NUL fails the payment with it, made U+FFFD (the void failed with it: a 500, funds held)", async () => {
    const response = await payAddress("closed");
    expect([response.status, response.body.error?.code]).toEqual([402, "unreachable_destination"]);
    expect(response.body.error.payment.status).toBe("failed");
    expect(response.body.error.message).toContain("closed\uFFFDfor now");
    const [attempt] = await app.db.query<{ failure_message: string }>(
      "SELECT failure_message FROM attempts WHERE payment_id = $1",
      [response.body.error.payment.id],
    );
    expect(attempt?.failure_message).toContain("closed\uFFFDfor now");
  });

  it("a host not allowed plain http is asked over https, and its failure is the address's", async () => {
    const response = await call("POST", "/v1/payments", {
      amount: "0.00001",
      asset: "BTC",
      source: { account: accountId },
      destination: { type: "lightning_address", address: `bob@localhost:${host.split(":")[1]}` },
    });
    expect(response.status).toBe(402);
    expect(response.body.error.code).toBe("unreachable_destination");
    expect(callbacks.some((c) => c.user === "bob")).toBe(false);
  });
});
