// The guard at delivery, against a local receiver: a name that resolves to a private address is refused when
// it connects (DNS rebinding: public at registration, loopback now), before a byte reaches the receiver; an
// allowed receiver is reached through the guard's own resolution with its hostname kept; redirects are answers.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEgress, type Egress, EgressRefusedError, type Resolver } from "./fetch.ts";

let server: Server;
let port = 0;
let connections = 0;
const received: IncomingMessage[] = [];
const egresses: Egress[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    received.push(request);
    if (request.url === "/redirect") {
      response.writeHead(302, { location: `http://127.0.0.1:${port}/elsewhere` }).end();
      return;
    }
    response.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
  server.on("connection", () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterEach(async () => {
  await Promise.all(egresses.splice(0).map((egress) => egress.close()));
  received.length = 0;
  connections = 0;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A resolver answering from a table, each name's answers in turn (the last one repeated). */
function scripted(table: Record<string, readonly (readonly string[])[]>): Resolver {
  const asked = new Map<string, number>();
  return async (hostname) => {
    const answers = table[hostname];
    if (answers === undefined) throw new Error(`ENOTFOUND ${hostname}`);
    const n = asked.get(hostname) ?? 0;
    asked.set(hostname, n + 1);
    const answer = answers[Math.min(n, answers.length - 1)] ?? [];
    return answer.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
}

function egressOf(resolver: Resolver, allowHosts: readonly string[] = []): Egress {
  const egress = createEgress({ policy: { mode: "development", allowHosts }, resolver });
  egresses.push(egress);
  return egress;
}

async function refusal(promise: Promise<unknown>): Promise<EgressRefusedError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EgressRefusedError);
  return error as EgressRefusedError;
}

describe("createEgress", () => {
  it("DNS rebinding: public when registered, loopback when delivered → refused at the connection", async () => {
    const egress = egressOf(scripted({ "rebind.example": [["93.184.216.34"], ["127.0.0.1"]] }));
    const url = `https://rebind.example:${port}/hook`;
    expect(await egress.vetRegistration(url)).toMatchObject({ ok: true });
    const error = await refusal(egress.fetch(url, { method: "POST", body: "{}" }));
    expect(error.reason).toBe("address_not_public");
    expect(connections).toBe(0);
    expect(received).toHaveLength(0);
  });

  it("a name with any non-public address among its answers is refused, at registration and delivery", async () => {
    const egress = egressOf(scripted({ "mixed.example": [["93.184.216.34", "10.0.0.5"]] }));
    const registered = await egress.vetRegistration("https://mixed.example/hook");
    expect(registered).toMatchObject({ ok: false, reason: "address_not_public" });
    // The message reaches the tenant: it names the range, never the internal address the name answered.
    expect(registered.ok ? "" : registered.message).not.toContain("10.0.0.5");
    expect((await refusal(egress.fetch(`https://mixed.example:${port}/`))).reason).toBe("address_not_public");
    const v6 = egressOf(scripted({ "six.example": [["::ffff:127.0.0.1"]] }));
    expect(await v6.vetRegistration("https://six.example/")).toMatchObject({ ok: false });
    expect(connections).toBe(0);
  });

  it("registration: a name that does not resolve now is accepted (vetted again when it connects)", async () => {
    const egress = egressOf(scripted({}));
    expect(await egress.vetRegistration("https://not-yet.example/hook")).toMatchObject({ ok: true });
    expect((await refusal(egress.fetch(`https://not-yet.example:${port}/`))).reason).toBe("unresolvable");
  });

  it("registration waits for a silent resolver only its own bound, then accepts the name (vetted when it connects)", async () => {
    let asked = 0;
    const silent: Resolver = () => {
      asked += 1;
      return new Promise(() => {});
    };
    // A connection's lookup would wait a minute: the registering request does not.
    const egress = createEgress({
      policy: { mode: "development", allowHosts: [] },
      resolver: silent,
      limits: { connectTimeoutMs: 60_000, resolveTimeoutMs: 60_000, registrationResolveTimeoutMs: 50 },
    });
    egresses.push(egress);
    expect(await egress.vetRegistration("https://slow-dns.example/hook")).toMatchObject({ ok: true });
    expect(asked).toBe(1);
  }, 10_000);

  it("refuses literals, http and credentials before connecting", async () => {
    const egress = egressOf(scripted({}));
    expect((await refusal(egress.fetch(`http://127.0.0.1:${port}/`))).reason).toBe("https_required");
    expect((await refusal(egress.fetch(`https://127.0.0.1:${port}/`))).reason).toBe("address_not_public");
    expect((await refusal(egress.fetch(`https://2130706433:${port}/`))).reason).toBe("address_not_public");
    expect((await refusal(egress.fetch(`https://a:b@example.com/`))).reason).toBe("credentials_in_url");
    expect(connections).toBe(0);
  });

  it("an allowed receiver is reached through the guard's resolution, its hostname kept in Host", async () => {
    const egress = egressOf(scripted({ "receiver.test": [["127.0.0.1"]] }), ["receiver.test"]);
    const response = await egress.fetch(`http://receiver.test:${port}/hook`, { method: "POST", body: "{}" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    expect(received.map((r) => [r.method, r.url, r.headers.host])).toEqual([
      ["POST", "/hook", `receiver.test:${port}`],
    ]);
  });

  it("an allowed address literal with its port is reached; another port of it is not", async () => {
    const egress = egressOf(scripted({}), [`127.0.0.1:${port}`]);
    expect((await egress.fetch(`http://127.0.0.1:${port}/hook`)).status).toBe(200);
    expect((await refusal(egress.fetch(`http://127.0.0.1:${port + 1}/hook`))).reason).toBe("https_required");
  });

  it("an allowed name with its port is trusted on that port only: on another, its address is vetted at the connection", async () => {
    // The connection's lookup decided from the host alone: `receiver.test:<other port>` allowed it on every port,
    // so https to this port connected to loopback unvetted.
    const egress = egressOf(scripted({ "receiver.test": [["127.0.0.1"]] }), [`receiver.test:${port + 1}`]);
    expect((await refusal(egress.fetch(`https://receiver.test:${port}/hook`))).reason).toBe(
      "address_not_public",
    );
    expect(connections).toBe(0);
  });

  it("a redirect is the answer, never followed", async () => {
    const egress = egressOf(scripted({}), ["127.0.0.1"]);
    const response = await egress.fetch(`http://127.0.0.1:${port}/redirect`);
    expect(response.status).toBe(302);
    expect(received.map((r) => r.url)).toEqual(["/redirect"]);
  });

  it("send: a webhook POST's status, or its refusal as a value", async () => {
    const egress = egressOf(
      scripted({ "receiver.test": [["127.0.0.1"]], "rebind.example": [["127.0.0.1"]] }),
      ["receiver.test"],
    );
    const post = (url: string) =>
      egress.send({
        url,
        headers: { "webhook-id": "msg_1" },
        body: "{}",
        signal: AbortSignal.timeout(2_000),
      });
    expect(await post(`http://receiver.test:${port}/hook`)).toEqual({ statusCode: 200 });
    expect(received.map((r) => [r.headers["content-type"], r.headers["webhook-id"]])).toEqual([
      ["application/json", "msg_1"],
    ]);
    expect(await post(`https://rebind.example:${port}/hook`)).toMatchObject({ reason: "address_not_public" });
    expect(await post("https://169.254.169.254/latest")).toMatchObject({ reason: "address_not_public" });
    expect(received).toHaveLength(1);
  });
});
