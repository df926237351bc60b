// The Lightning rail's LNURL requests go through the egress guard the composition root gives it: a Lightning
// Address whose domain is, or resolves to, a private, loopback or metadata address is refused before anything is
// sent, and so is a pay request whose callback points at one; a host the operator allowed (a local LNURL server)
// is still asked.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { invoiceForAddress, lnurlDefaults } from "../../adapters/lightning/lnurl.ts";
import { createEgress, type Egress } from "../egress/index.ts";
import { lnurlEgressOf } from "./rails.ts";

let server: Server;
let port = 0;
let callback = "";
const asked: string[] = [];
const egresses: Egress[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    asked.push(request.url ?? "");
    response.setHeader("content-type", "application/json");
    response.end(
      JSON.stringify({
        tag: "payRequest",
        callback,
        minSendable: 1_000,
        maxSendable: 1_000_000,
        metadata: '[["text/plain","x"]]',
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await Promise.all(egresses.map((egress) => egress.close()));
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function keep(egress: Egress): Egress {
  egresses.push(egress);
  return egress;
}

describe("Lightning Addresses through the egress guard", () => {
  it("an address whose domain resolves to a private address is refused, nothing sent", async () => {
    const egress = keep(
      createEgress({
        policy: { mode: "development", allowHosts: [] },
        resolver: async () => [{ address: "10.0.0.7", family: 4 }],
      }),
    );
    asked.length = 0;
    const answer = await invoiceForAddress(`alice@pay.example:${port}`, 10_000n, {
      ...lnurlDefaults,
      fetch: egress.fetch,
    });
    expect(answer).toMatchObject({ ok: false, code: "unreachable_destination" });
    expect(answer.ok ? "" : answer.message).toMatch(/resolves to an address that is not public/);
    expect(answer.ok ? "" : answer.message).not.toContain("10.0.0.7"); // the gateway's network's answer, not told
    expect(asked).toEqual([]);
  });

  it.each([
    "alice@127.0.0.1",
    "alice@2130706433",
    "alice@0x7f000001",
    "alice@127.1",
    "alice@169.254.169.254",
    "alice@10.0.0.1",
    "alice@metadata.google.internal",
    "alice@localhost",
  ])("%s is refused as the composition root wires the rail", async (address) => {
    const egress = keep(lnurlEgressOf({ mode: "development", egressAllowHosts: [] }, []));
    const answer = await invoiceForAddress(address, 10_000n, { ...lnurlDefaults, fetch: egress.fetch });
    expect(answer).toMatchObject({ ok: false, code: "unreachable_destination" });
    expect(answer.ok ? "" : answer.message).toMatch(/egress refused/);
  });

  it("an allowed local LNURL server is asked; its callback to a metadata or private address is refused", async () => {
    const egress = keep(lnurlEgressOf({ mode: "development", egressAllowHosts: [] }, ["127.0.0.1"]));
    const params = { ...lnurlDefaults, httpHosts: ["127.0.0.1"], fetch: egress.fetch };
    for (const target of [
      "https://169.254.169.254/cb",
      "https://10.0.0.1/cb",
      "https://metadata.google.internal/cb",
    ]) {
      callback = target;
      asked.length = 0;
      const answer = await invoiceForAddress(`alice@127.0.0.1:${port}`, 10_000n, params);
      expect(answer).toMatchObject({ ok: false, code: "unreachable_destination" });
      expect(answer.ok ? "" : answer.message).toMatch(/egress refused/);
      expect(asked).toEqual(["/.well-known/lnurlp/alice"]);
    }
  });

  it("in production even an allowed host is asked over https only", async () => {
    const egress = keep(lnurlEgressOf({ mode: "production", egressAllowHosts: [] }, ["127.0.0.1"]));
    asked.length = 0;
    const answer = await invoiceForAddress(`alice@127.0.0.1:${port}`, 10_000n, {
      ...lnurlDefaults,
      httpHosts: ["127.0.0.1"],
      fetch: egress.fetch,
    });
    expect(answer).toMatchObject({ ok: false, code: "unreachable_destination" });
    expect(asked).toEqual([]);
  });
});
