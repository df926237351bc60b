// The resolution of names tenants choose (dnsResolver): DNS queries on the event loop's own sockets, against a
// nameserver this test runs on 127.0.0.1 (a few lines of the wire format: one question, A and AAAA answers). A name
// gets every address of both kinds; a nameserver that never answers holds no thread of the pool, and each query
// ends by its own bound.
import { pbkdf2 } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dnsQueryTimeoutMs, dnsQueryTries, dnsResolver, vetRegistration } from "./fetch.ts";

/** What the test's nameserver knows: per name, its A and AAAA addresses; `silent` names are never answered. */
const zone: Record<string, { a?: number[][]; aaaa?: number[][] }> = {
  "hooks.example": {
    a: [[93, 184, 216, 34]],
    aaaa: [[0x26, 0x06, 0x28, 0x00, 0x02, 0x20, 0, 1, ...Array(7).fill(0), 1]],
  },
  "four.example": { a: [[93, 184, 216, 35]] },
  "inside.example": {
    a: [
      [93, 184, 216, 36],
      [10, 0, 0, 5],
    ],
  },
};
const silent = new Set(["silent.example"]);

/** The question's name (labels joined by dots), its type, and where the question ends. */
function question(packet: Buffer): { name: string; type: number; end: number } {
  const labels: string[] = [];
  let at = 12;
  while (packet[at]! !== 0) {
    const length = packet[at]!;
    labels.push(packet.subarray(at + 1, at + 1 + length).toString("ascii"));
    at += 1 + length;
  }
  return { name: labels.join(".").toLowerCase(), type: packet.readUInt16BE(at + 1), end: at + 5 };
}

function answer(query: Buffer): Buffer | null {
  const { name, type, end } = question(query);
  if (silent.has(name)) return null;
  const known = zone[name];
  const records = known === undefined ? [] : ((type === 1 ? known.a : type === 28 ? known.aaaa : []) ?? []);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // the id
  header.writeUInt16BE(known === undefined ? 0x8183 : 0x8180, 2); // a response, recursion; NXDOMAIN or NOERROR
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  const answers = records.map((rdata) => {
    const record = Buffer.alloc(12 + rdata.length);
    record.writeUInt16BE(0xc00c, 0); // the question's name
    record.writeUInt16BE(type, 2);
    record.writeUInt16BE(1, 4); // IN
    record.writeUInt32BE(60, 6);
    record.writeUInt16BE(rdata.length, 10);
    Buffer.from(rdata).copy(record, 12);
    return record;
  });
  return Buffer.concat([header, query.subarray(12, end), ...answers]);
}

let server: Socket;
let servers: string[];
let queries = 0;

beforeAll(async () => {
  server = createSocket("udp4");
  server.on("message", (message, from) => {
    queries += 1;
    const reply = answer(message);
    if (reply !== null) server.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => server.bind(0, "127.0.0.1", resolve));
  servers = [`127.0.0.1:${server.address().port}`];
});

afterAll(() => {
  server?.close();
});

describe("dnsResolver", () => {
  it("answers every A and AAAA address of a name, and one kind when the name has only that", async () => {
    const resolve = dnsResolver({ servers });
    expect(await resolve("hooks.example")).toEqual([
      { address: "93.184.216.34", family: 4 },
      { address: "2606:2800:220:1::1", family: 6 },
    ]);
    expect(await resolve("four.example")).toEqual([{ address: "93.184.216.35", family: 4 }]);
    await expect(resolve("nowhere.example")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("gives registration every address to vet: one private among them refuses the name", async () => {
    const verdict = await vetRegistration(
      "https://inside.example/hook",
      { mode: "production", allowHosts: [] },
      { resolver: dnsResolver({ servers }) },
    );
    expect(verdict).toMatchObject({ ok: false, reason: "address_not_public" });
  });

  it("holds no thread of the pool while a nameserver never answers, and each query ends by its own bound", async () => {
    // More unanswered names than the pool's four threads: getaddrinfo would hold all four until the system gave up.
    const resolve = dnsResolver({ servers });
    const asked = queries;
    const startedMs = Date.now();
    const pending = Array.from({ length: 16 }, () =>
      resolve("silent.example").then(
        () => "answered",
        (error: NodeJS.ErrnoException) => error.code,
      ),
    );
    // Work that needs a thread of the pool, meanwhile: done long before the queries give up.
    const pooledMs = await new Promise<number>((done, fail) =>
      pbkdf2("secret", "salt", 1, 32, "sha256", (error) =>
        error ? fail(error) : done(Date.now() - startedMs),
      ),
    );
    expect(pooledMs).toBeLessThan(dnsQueryTimeoutMs / 2);
    const outcomes = await Promise.all(pending);
    expect(new Set(outcomes)).toEqual(new Set(["ETIMEOUT"]));
    expect(Date.now() - startedMs).toBeLessThan(dnsQueryTimeoutMs * 2 ** dnsQueryTries * 2);
    expect(queries - asked).toBeGreaterThanOrEqual(16);
  });
});
