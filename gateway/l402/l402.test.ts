// L402 without a network: the identifier's layout, the caveats' rules, the headers both ways (Aperture's
// challenge; LSAT-first raw headers, comma-joined lines, several macaroons), and the scheme on PGlite with a toy
// Lightning-like receiver whose preimages the test holds: forged and extra caveats, another invoice's preimage,
// expiry, an unpaid invoice (one lookup on the rail, never a wait), another tenant, the request count and its
// give-back, revocation, the prune of expired tokens, the bound of the tokens a process remembers.
import { createHash, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { assets, type LogFn, type Logger, type Sql, silentLogger } from "../../core/index.ts";
import { recordStatements } from "../../test/support/recording-db.ts";
import { createAccount, createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { createPaywall } from "../paywall/core.ts";
import { addPaywall, getPaywall, type PaywallFields, updatePaywall } from "../paywall/paywalls.ts";
import type { PaywallRequest, PricedResource, SchemeVerdict } from "../paywall/scheme.ts";
import {
  applyReceived,
  createOpenInvoiceMemory,
  getInvoice,
  type ReceivingRail,
  type SettlementDeps,
} from "../settlement/index.ts";
import { createTenant } from "../tenants/index.ts";
import {
  attenuateMacaroon,
  caveatServiceName,
  challengeLines,
  createL402Scheme,
  decodeIdentifier,
  encodeIdentifier,
  invoicesKnownLagMsMax,
  invoicesKnownRecordEveryMs,
  judgeCaveats,
  l402TokenGraceMs,
  l402TokenPruneEveryMs,
  macaroonCaveatsMax,
  mintCaveats,
  mintMacaroon,
  parseCredentials,
  pruneL402Tokens,
  readMacaroon,
  recordInvoicesKnown,
  revokeToken,
  rootKeyId,
  startInvoicesKnownRecord,
  startL402TokenPrune,
} from "./index.ts";

const hash = "ab".repeat(32);
const tokenId = "cd".repeat(32);

describe("the identifier", () => {
  it("is uint16 0 ‖ payment hash ‖ token id, 66 bytes, and reads back", () => {
    const bytes = encodeIdentifier({ paymentHash: hash, tokenId });
    expect(bytes.length).toBe(66);
    expect(Buffer.from(bytes).toString("hex")).toBe(`0000${hash}${tokenId}`);
    expect(decodeIdentifier(bytes)).toEqual({ paymentHash: hash, tokenId });
    expect(rootKeyId(bytes)).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("refuses another length or version", () => {
    const bytes = Buffer.from(encodeIdentifier({ paymentHash: hash, tokenId }));
    expect(decodeIdentifier(bytes.subarray(0, 65))).toBeNull();
    bytes.writeUInt16BE(1, 0);
    expect(decodeIdentifier(bytes)).toBeNull();
    expect(() => encodeIdentifier({ paymentHash: "ab", tokenId })).toThrow(RangeError);
  });
});

describe("the macaroon", () => {
  it("is written as the macaroon package writes V2 binary (where its writer still works: few caveats)", () => {
    const library = createRequire(import.meta.url)("macaroon") as {
      newMacaroon(p: object): { addFirstPartyCaveat(c: string): void; exportBinary(): Uint8Array };
    };
    const identifier = encodeIdentifier({ paymentHash: hash, tokenId });
    const rootKey = new Uint8Array(32).fill(7);
    const theirs = library.newMacaroon({ identifier, rootKey, location: "lsat", version: 2 });
    theirs.addFirstPartyCaveat("services=w:0");
    theirs.addFirstPartyCaveat("w_valid_until=1");
    const ours = mintMacaroon({ identifier, rootKey, caveats: ["services=w:0", "w_valid_until=1"] });
    expect(Buffer.from(ours).toString("hex")).toBe(Buffer.from(theirs.exportBinary()).toString("hex"));
    expect(readMacaroon(ours)?.verifies(rootKey)).toBe(true);
    expect(readMacaroon(ours)?.verifies(new Uint8Array(32))).toBe(false);
  });
});

describe("caveats", () => {
  const now = 1_800_000_000_000;
  const minted = mintCaveats({
    service: "Weather API",
    validUntilSeconds: 1_800_000_060,
    path: "/w",
    requestsMax: 5,
  });
  const at = (path = "/w", nowMs = now) => ({ service: "Weather API", path, nowMs });

  it("are minted as services, valid_until, path and requests under the service's caveat name", () => {
    expect(caveatServiceName("Weather API")).toBe("weather-api");
    expect(minted).toEqual([
      "services=weather-api:0",
      "weather-api_valid_until=1800000060",
      "weather-api_path=/w",
      "weather-api_requests=5",
    ]);
    expect(judgeCaveats(minted, at())).toEqual({ ok: true, requestsMax: 5 });
  });

  it("keep a path ending in whitespace as it is: its token opens it, not the path without it (it opened that one instead)", () => {
    for (const end of [" ", "\t", "\n", "\u00a0", " \u3000"]) {
      const path = `/files/report${end}`;
      const terms = { service: "Weather API", validUntilSeconds: 1_800_000_060, path, requestsMax: null };
      const conditions = mintCaveats(terms);
      expect(judgeCaveats(conditions, at(path)), JSON.stringify(end)).toEqual({
        ok: true,
        requestsMax: null,
      });
      expect(judgeCaveats(conditions, at("/files/report"))).toMatchObject({ code: "l402_path_mismatch" });
    }
  });

  it("tell a path with a literal % from the path its percent-encoding would spell (one token opened both)", () => {
    const terms = (path: string) => ({
      service: "Weather API",
      validUntilSeconds: 1_800_000_060,
      path,
      requestsMax: null,
    });
    const literal = mintCaveats(terms("/files/report%20"));
    expect(judgeCaveats(literal, at("/files/report%20"))).toEqual({ ok: true, requestsMax: null });
    expect(judgeCaveats(literal, at("/files/report "))).toMatchObject({ code: "l402_path_mismatch" });
    const spaced = mintCaveats(terms("/files/report "));
    expect(judgeCaveats(spaced, at("/files/report%20"))).toMatchObject({ code: "l402_path_mismatch" });
  });

  it("ignore unknown conditions and other services' caveats", () => {
    const extra = [...minted, `preimage=${hash}`, "other_valid_until=1", "whatever"];
    expect(judgeCaveats(extra, at())).toEqual({ ok: true, requestsMax: 5 });
  });

  it("only tighten: every occurrence must hold, the smallest count wins", () => {
    expect(judgeCaveats([...minted, "weather-api_requests=2"], at())).toEqual({ ok: true, requestsMax: 2 });
    expect(judgeCaveats([...minted, "weather-api_requests=50"], at())).toEqual({ ok: true, requestsMax: 5 });
    expect(
      judgeCaveats([...minted, "weather-api_valid_until=1900000000"], at("/w", now + 61_000)),
    ).toMatchObject({
      ok: false,
      code: "l402_expired",
    });
    expect(judgeCaveats([...minted, "weather-api_path=/x"], at())).toMatchObject({
      code: "l402_path_mismatch",
    });
    expect(judgeCaveats([...minted, "services=other:0"], at())).toMatchObject({
      code: "l402_service_mismatch",
    });
  });

  it("refuse a count beyond the schema's maximum, and a count only lowers the token's own bound", () => {
    expect(judgeCaveats([...minted, "weather-api_requests=3000000000"], at())).toMatchObject({
      code: "l402_caveat_invalid",
    });
    expect(judgeCaveats(["services=weather-api:0", "weather-api_requests=1000000001"], at())).toMatchObject({
      code: "l402_caveat_invalid",
    });
    expect(judgeCaveats(["services=weather-api:0", "weather-api_requests=1000000000"], at())).toEqual({
      ok: true,
      requestsMax: 1_000_000_000,
    });
    expect(
      judgeCaveats(["services=weather-api:0", "weather-api_requests=50"], { ...at(), requestsMax: 3 }),
    ).toEqual({
      ok: true,
      requestsMax: 3,
    });
    expect(judgeCaveats([...minted, "weather-api_requests=2"], { ...at(), requestsMax: 3 })).toEqual({
      ok: true,
      requestsMax: 2,
    });
    expect(judgeCaveats(["services=weather-api:0"], { ...at(), requestsMax: null })).toEqual({
      ok: true,
      requestsMax: null,
    });
  });

  it("refuse an expired token, another path, another service, a malformed known caveat", () => {
    expect(judgeCaveats(minted, at("/w", now + 60_000))).toMatchObject({ code: "l402_expired" });
    expect(judgeCaveats(minted, at("/w/2"))).toMatchObject({ code: "l402_path_mismatch" });
    // A `*` is a literal character of the path, never a prefix: nothing the gateway mints is a prefix token.
    expect(judgeCaveats(["services=weather-api:0", "weather-api_path=/w*"], at("/w/2"))).toMatchObject({
      code: "l402_path_mismatch",
    });
    expect(judgeCaveats(["services=weather-api:0", "weather-api_path=/w*"], at("/w*"))).toMatchObject({
      ok: true,
    });
    expect(judgeCaveats(minted, { ...at(), service: "maps" })).toMatchObject({
      code: "l402_service_mismatch",
    });
    expect(judgeCaveats(["weather-api_path=/w"], at())).toMatchObject({ code: "l402_service_mismatch" });
    expect(judgeCaveats([...minted, "weather-api_valid_until=soon"], at())).toMatchObject({
      code: "l402_caveat_invalid",
    });
  });
});

const request = (
  authorization: string[] | undefined,
  raw = true,
  url = "http://127.0.0.1/w",
): PaywallRequest => ({
  method: "GET",
  url,
  headers: authorization === undefined ? {} : { authorization: authorization[0] },
  ...(raw && authorization !== undefined
    ? { rawHeaders: authorization.flatMap((value) => ["Authorization", value]) }
    : {}),
});

describe("headers", () => {
  const macaroon = mintMacaroon({
    identifier: encodeIdentifier({ paymentHash: hash, tokenId }),
    rootKey: new Uint8Array(32),
    caveats: ["services=w:0"],
  });
  const b64 = Buffer.from(macaroon).toString("base64");

  it("challenge as Aperture: LSAT then L402, macaroon then invoice", () => {
    expect(challengeLines({ macaroon, invoice: "lnbcrt1x" })).toEqual([
      ["WWW-Authenticate", `LSAT macaroon="${b64}", invoice="lnbcrt1x"`],
      ["WWW-Authenticate", `L402 macaroon="${b64}", invoice="lnbcrt1x"`],
    ]);
  });

  it("read L402 and LSAT in any case, LSAT-first raw headers, comma-joined lines and several macaroons", () => {
    const preimage = "EF".repeat(32);
    const one = { macaroons: [macaroon], preimage: preimage.toLowerCase() };
    expect(parseCredentials(request([`l402 ${b64}:${preimage}`]))).toEqual({
      kind: "credentials",
      credentials: [{ scheme: "L402", ...one }],
    });
    // Node keeps the first Authorization in `headers`; the raw list has both.
    expect(parseCredentials(request([`LSAT ${b64}:${preimage}`, `L402 ${b64}:${preimage}`]))).toEqual({
      kind: "credentials",
      credentials: [
        { scheme: "LSAT", ...one },
        { scheme: "L402", ...one },
      ],
    });
    expect(parseCredentials(request([`LSAT ${b64}:${preimage}, L402 ${b64}:${preimage}`]))).toMatchObject({
      credentials: [{ scheme: "LSAT" }, { scheme: "L402" }],
    });
    expect(parseCredentials(request([`L402 ${b64}, ${b64}:${preimage}`], false))).toMatchObject({
      credentials: [{ macaroons: [macaroon, macaroon] }],
    });
    expect(readMacaroon(macaroon)?.conditions).toEqual(["services=w:0"]);
  });

  it("tell no credential from a malformed one", () => {
    expect(parseCredentials(request(undefined))).toEqual({ kind: "none" });
    expect(parseCredentials(request(["Bearer abc"]))).toEqual({ kind: "none" });
    expect(parseCredentials(request([`L402 ${b64}:abc`]))).toMatchObject({ kind: "malformed" });
    expect(parseCredentials(request([`L402 ${b64}`]))).toMatchObject({ kind: "malformed" });
    expect(parseCredentials(request([`L402 ${"A".repeat(20_000)}:${hash}`]))).toMatchObject({
      kind: "malformed",
    });
    expect(parseCredentials(request([`L402 ${Array(5).fill(b64).join(",")}:${hash}`]))).toMatchObject({
      kind: "malformed",
    });
  });
});

// ---- the scheme on PGlite, with a toy receiver standing in for LND

let db: Db;
let ledger: Ledger;
const tenantId = "ten_l402";
const preimages = new Map<string, string>(); // payment hash → preimage
/** Payment hashes the toy rail holds as paid before the gateway has booked them, and how often it was asked. */
const settledOnRail = new Set<string>();
const railLookups: string[] = [];
/** The Lightning rail's most for one invoice (adapters/lightning: lightningRailLimitsDefault.amountMaxMsat). */
const lightningInvoiceMsatMax = 4_294_967_295_000n;
const toyLightning: ReceivingRail = {
  async lookupReceived(paymentHash) {
    railLookups.push(paymentHash);
    return settledOnRail.has(paymentHash);
  },
  id: "toyln",
  asset: assets.BTC,
  // The Lightning rail's bounds on one invoice (its snapshot), which createInvoice checks.
  snapshot: () => ({
    rail: "toyln",
    kind: "lightning",
    asset: assets.BTC,
    available: true,
    reaches: [],
    amountMin: 1n,
    amountMax: lightningInvoiceMsatMax,
    liquidity: null,
    feeFixed: 0n,
    feePpm: 0n,
    networkFeeMicroUsd: 0n,
    latencyMs: 0,
    takenAtMs: Date.now(),
  }),
  async receive(offer) {
    const preimage = randomBytes(32).toString("hex");
    const paymentHash = createHash("sha256").update(Buffer.from(preimage, "hex")).digest("hex");
    preimages.set(paymentHash, preimage);
    return {
      status: "offered",
      railReference: paymentHash,
      expiresAtMs: Date.now() + offer.expirySeconds * 1000,
      instructions: {
        method: "lightning",
        bolt11: `lnbcrt-toy-${offer.reference}`,
        payment_hash: paymentHash,
      },
    };
  },
};
let settlement: SettlementDeps;
let clockMs = Date.now();
const resource: PricedResource = {
  tenantId,
  paywallId: "pw_1",
  accountId: "acct_l402_seller",
  service: "weather",
  description: "the weather",
  mimeType: "application/json",
};
const offers = [{ rail: "toyln", price: { asset: assets.BTC, amount: 2_000n } }];

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: tenantId, name: "L402" });
  await createTenant(db, { id: "ten_other", name: "Other" });
  await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.BTC, name: "seller", id: resource.accountId },
  );
  await createAccount(
    { sql: db, ledger },
    {
      tenantId: null,
      kind: "clearing",
      asset: assets.BTC,
      name: "toyln",
      rail: "toyln",
      id: "acct_clearing_toyln",
    },
  );
  settlement = {
    db,
    ledger,
    accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
    openInvoices: createOpenInvoiceMemory({ entriesMax: 10 }),
    rails: new Map([[toyLightning.id, toyLightning]]),
  };
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const scheme = (limits: Parameters<typeof createL402Scheme>[0]["limits"] = {}) =>
  createL402Scheme({
    settlement,
    rail: "toyln",
    nowMs: () => clockMs,
    limits: { tokenRequestsMax: 3, ...limits },
  });

/** A challenge, its macaroon (base64) and payment hash, and the invoice id. */
async function challenged(l402 = scheme(), at: PricedResource = resource, url?: string) {
  const part = await l402.challenge(at, offers, request(undefined, true, url));
  const line = part.headers.find(([name, value]) => name === "WWW-Authenticate" && value.startsWith("L402 "));
  const [, macaroon = "", invoice = ""] = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(line?.[1] ?? "") ?? [];
  const paymentHash = decodeIdentifier(
    readMacaroon(Buffer.from(macaroon, "base64"))!.identifier,
  )!.paymentHash;
  const [row] = await db.query<{ id: string }>("SELECT id FROM invoices WHERE rail_reference = $1", [
    paymentHash,
  ]);
  return {
    l402,
    part,
    macaroon,
    invoice,
    paymentHash,
    invoiceId: row!.id,
    preimage: preimages.get(paymentHash)!,
  };
}

async function pay(invoiceId: string, paymentHash: string) {
  const invoice = await getInvoice(db, { tenantId, id: invoiceId });
  await applyReceived(settlement, {
    rail: "toyln",
    reference: invoiceId,
    amount: invoice!.amount,
    evidence: { rail: "lightning", paymentHash, preimage: preimages.get(paymentHash)! },
  });
}

const verify = (
  l402: ReturnType<typeof scheme>,
  authorization: string,
  at: PricedResource = resource,
  url?: string,
): Promise<SchemeVerdict> => l402.verify(at, offers, request([authorization], true, url));

const code = (verdict: SchemeVerdict) => (verdict.kind === "refused" ? verdict.refusal.code : "paid");

describe("the scheme", () => {
  it("challenges with an invoice for the requests a token buys, into the paywall's account", async () => {
    const { part, invoice, invoiceId, macaroon } = await challenged();
    expect(part.headers.map(([name]) => name)).toEqual(["WWW-Authenticate", "WWW-Authenticate"]);
    expect(invoice).toBe(`lnbcrt-toy-${invoiceId}`);
    expect(await getInvoice(db, { tenantId, id: invoiceId })).toMatchObject({
      accountId: resource.accountId,
      amount: 6_000n, // 3 requests at 2,000 msat
      status: "open",
      rail: "toyln",
    });
    expect(readMacaroon(Buffer.from(macaroon, "base64"))?.conditions).toEqual([
      "services=weather:0",
      `weather_valid_until=${Math.floor(clockMs / 1000) + 3600}`,
      "weather_path=/w",
      "weather_requests=3",
    ]);
    expect(scheme().carries(request([`LSAT ${macaroon}:${hash}`]))).toBe(true);
    expect(scheme().carries(request(["Bearer x"]))).toBe(false);
  });

  it("serves a paid token up to its count, gives back a request not served, then refuses", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    const token = `L402 ${macaroon}:${preimage}`;
    expect(code(await verify(l402, token))).toBe("l402_invoice_unpaid");
    await pay(invoiceId, paymentHash);
    const first = await verify(l402, token);
    expect(first.kind === "paid" && first.payer).toMatch(/^[0-9a-f]{64}$/);
    if (first.kind === "paid")
      expect(await first.complete({ served: false })).toEqual({ settled: true, headers: [] });
    for (let i = 0; i < 3; i += 1) {
      const verdict = await verify(l402, token);
      expect(code(verdict)).toBe("paid");
      if (verdict.kind === "paid") await verdict.complete({ served: true });
    }
    expect(code(await verify(l402, token))).toBe("l402_requests_exhausted");
  });

  it("gives back a request served whose answer never reached the payer, once: the token serves it again", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    const token = `L402 ${macaroon}:${preimage}`;
    await pay(invoiceId, paymentHash);
    for (let i = 0; i < 3; i += 1) {
      const verdict = await verify(l402, token);
      if (verdict.kind !== "paid") throw new Error(`not paid: ${code(verdict)}`);
      const done = await verdict.complete({ served: true });
      if (!done.settled || done.undelivered === undefined)
        throw new Error("no way to say it was not delivered");
      // The first answer never reached the payer: said twice, given back once.
      if (i === 0) {
        expect(await done.undelivered()).toBe(true);
        expect(await done.undelivered()).toBe(true);
      }
    }
    // Three served of a token of three, one of them undelivered: one more.
    const fourth = await verify(l402, token);
    expect(code(fourth)).toBe("paid");
    if (fourth.kind === "paid") await fourth.complete({ served: true });
    expect(code(await verify(l402, token))).toBe("l402_requests_exhausted");
  });

  it("counts across processes: a scheme that never saw the token serves only what is left", async () => {
    const { macaroon, invoiceId, paymentHash, preimage } = await challenged();
    await pay(invoiceId, paymentHash);
    const token = `L402 ${macaroon}:${preimage}`;
    const verdicts = await Promise.all(
      [scheme(), scheme(), scheme(), scheme(), scheme()].map((s) => verify(s, token)),
    );
    expect(verdicts.map(code).sort()).toEqual([
      "l402_requests_exhausted",
      "l402_requests_exhausted",
      "paid",
      "paid",
      "paid",
    ]);
  });

  it("refuses a forged or extra caveat, another invoice's preimage, expiry, another paywall and another tenant", async () => {
    const a = await challenged();
    const b = await challenged(a.l402);
    await pay(a.invoiceId, a.paymentHash);
    await pay(b.invoiceId, b.paymentHash);
    const bytes = Buffer.from(a.macaroon, "base64");
    // A caveat's text changed in place (the count raised): the chain no longer ends in the signature.
    const forged = Buffer.from(
      bytes.toString("latin1").replace("weather_requests=3", "weather_requests=9"),
      "latin1",
    );
    expect(code(await verify(a.l402, `L402 ${forged.toString("base64")}:${a.preimage}`))).toBe(
      "l402_signature_invalid",
    );
    // A caveat appended without extending the chain (the old signature kept): the same.
    const presented = readMacaroon(bytes)!;
    const extra = mintMacaroon({
      identifier: presented.identifier,
      rootKey: randomBytes(32),
      caveats: [...presented.conditions, "weather_requests=99"],
    });
    expect(code(await verify(a.l402, `L402 ${Buffer.from(extra).toString("base64")}:${a.preimage}`))).toBe(
      "l402_signature_invalid",
    );
    expect(code(await verify(a.l402, `L402 ${a.macaroon}:${b.preimage}`))).toBe("l402_preimage_mismatch");
    expect(
      code(await verify(a.l402, `L402 ${a.macaroon}:${a.preimage}`, { ...resource, paywallId: "pw_2" })),
    ).toBe("l402_service_mismatch");
    expect(
      code(await verify(a.l402, `L402 ${a.macaroon}:${a.preimage}`, { ...resource, tenantId: "ten_other" })),
    ).toBe("l402_unknown_token");
    expect(code(await verify(a.l402, `L402 garbage:${a.preimage}`))).toBe("l402_malformed");
    clockMs += 3_601_000;
    try {
      expect(code(await verify(a.l402, `L402 ${a.macaroon}:${a.preimage}`))).toBe("l402_expired");
    } finally {
      clockMs -= 3_601_000;
    }
    // After all that, the token is whole: nothing refused was counted.
    expect(code(await verify(a.l402, `LSAT ${a.macaroon}:${a.preimage}`))).toBe("paid");
  });

  it("accepts a caveat the holder appended properly, and it only tightens", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    await pay(invoiceId, paymentHash);
    // What a holder can do: extend the chain from the signature it holds.
    const attenuated = attenuateMacaroon(Buffer.from(macaroon, "base64"), [
      "weather_requests=1",
      `preimage=${preimage}`,
    ]);
    const token = `L402 ${Buffer.from(attenuated).toString("base64")}:${preimage}`;
    expect(code(await verify(l402, token))).toBe("paid");
    expect(code(await verify(l402, token))).toBe("l402_requests_exhausted");
    // The original still has its other two.
    expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`))).toBe("paid");
  });

  it("refuses one who has not paid before any lookup or HMAC, and a macaroon carrying more caveats than a holder needs", async () => {
    const a = await challenged();
    const b = await challenged(a.l402);
    await pay(a.invoiceId, a.paymentHash);
    // Another tenant's token (no row here) with the wrong preimage: refused for the preimage, which costs nothing,
    // before the row is looked for.
    expect(
      code(await verify(a.l402, `L402 ${a.macaroon}:${b.preimage}`, { ...resource, tenantId: "ten_other" })),
    ).toBe("l402_preimage_mismatch");
    // Caveats appended without a key, each an HMAC to check: past macaroonCaveatsMax, malformed, even when paid.
    const bytes = Buffer.from(a.macaroon, "base64");
    const padded = (count: number) =>
      attenuateMacaroon(
        bytes,
        Array.from({ length: count }, (_, i) => `note${i}=x`),
      );
    const minted = readMacaroon(bytes)!.conditions.length;
    const atMost = `L402 ${Buffer.from(padded(macaroonCaveatsMax - minted)).toString("base64")}:${a.preimage}`;
    expect(code(await verify(a.l402, atMost))).toBe("paid");
    const past = `L402 ${Buffer.from(padded(macaroonCaveatsMax - minted + 1)).toString("base64")}:${a.preimage}`;
    expect(code(await verify(a.l402, past))).toBe("l402_malformed");
  });

  it("refuses a token once an expiry the holder appended has passed, however the caveat is spaced, after serving it", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    await pay(invoiceId, paymentHash);
    const soon = Math.floor(clockMs / 1000) + 30;
    const attenuated = attenuateMacaroon(Buffer.from(macaroon, "base64"), [
      ` weather_valid_until = ${soon} `,
    ]);
    const token = `L402 ${Buffer.from(attenuated).toString("base64")}:${preimage}`;
    expect(code(await verify(l402, token))).toBe("paid"); // judged, and the judgement remembered
    clockMs += 31_000;
    try {
      expect(code(await verify(l402, token))).toBe("l402_expired");
      // The token as minted lives longer (an hour).
      expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`))).toBe("paid");
    } finally {
      clockMs -= 31_000;
    }
  });

  it("counts concurrent requests of one process together, each against its own bound, never beyond the row's", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged(
      scheme({ tokenRequestsMax: 5 }),
    );
    await pay(invoiceId, paymentHash);
    const full = `L402 ${macaroon}:${preimage}`;
    const tightened = `L402 ${Buffer.from(
      attenuateMacaroon(Buffer.from(macaroon, "base64"), ["weather_requests=2"]),
    ).toString("base64")}:${preimage}`;
    // Twelve at once on one scheme (one counting statement per round): the attenuated copy's first two are within
    // its bound of 2, and the row's five are never exceeded whatever the order.
    const asked = [
      full,
      tightened,
      tightened,
      tightened,
      full,
      full,
      full,
      full,
      full,
      full,
      tightened,
      full,
    ];
    const verdicts = await Promise.all(asked.map((token) => verify(l402, token)));
    const paid = verdicts.filter((v) => v.kind === "paid").length;
    expect(paid).toBe(5);
    const tightenedPaid = verdicts.filter((v, i) => asked[i] === tightened && v.kind === "paid").length;
    expect(tightenedPaid).toBeLessThanOrEqual(2);
    expect(verdicts.filter((v) => v.kind !== "paid").map(code)).toEqual(
      Array(asked.length - 5).fill("l402_requests_exhausted"),
    );
    const [row] = await db.query<{ requests_used: number }>(
      "SELECT requests_used FROM l402_tokens WHERE payment_hash = $1",
      [paymentHash],
    );
    expect(Number(row!.requests_used)).toBe(5);
    // A request not served gives its count back; the next one takes it.
    const first = verdicts.find((v) => v.kind === "paid");
    if (first?.kind === "paid") await first.complete({ served: false });
    expect(code(await verify(l402, full))).toBe("paid");
    expect(code(await verify(l402, full))).toBe("l402_requests_exhausted");
  });

  it("refuses an appended count beyond the schema's maximum (never a database error), counted or not", async () => {
    const uncounted = { ...resource, credential: { lifetimeSeconds: 120, requestsMax: null } };
    for (const at of [resource, uncounted]) {
      const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged(scheme(), at);
      await pay(invoiceId, paymentHash);
      const attenuated = attenuateMacaroon(Buffer.from(macaroon, "base64"), ["weather_requests=3000000000"]);
      const token = `L402 ${Buffer.from(attenuated).toString("base64")}:${preimage}`;
      expect(code(await verify(l402, token, at))).toBe("l402_caveat_invalid");
      expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`, at))).toBe("paid");
    }
  });

  it("mints the literal path: a token bought for `/demo/paid/*` serves only that path, not the prefix", async () => {
    const url = "http://127.0.0.1/demo/paid/*";
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged(scheme(), resource, url);
    expect(readMacaroon(Buffer.from(macaroon, "base64"))?.conditions).toContain("weather_path=/demo/paid/*");
    await pay(invoiceId, paymentHash);
    const token = `L402 ${macaroon}:${preimage}`;
    expect(code(await verify(l402, token, resource, "http://127.0.0.1/demo/paid/secret"))).toBe(
      "l402_path_mismatch",
    );
    expect(code(await verify(l402, token, resource, "http://127.0.0.1/demo/paid/"))).toBe(
      "l402_path_mismatch",
    );
    expect(code(await verify(l402, token, resource, url))).toBe("paid");
  });

  it("reads the path of a URL built from a malformed Host without throwing", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged(
      scheme(),
      resource,
      "http://a b/w",
    );
    expect(readMacaroon(Buffer.from(macaroon, "base64"))?.conditions).toContain("weather_path=/w");
    await pay(invoiceId, paymentHash);
    const token = `L402 ${macaroon}:${preimage}`;
    expect(code(await verify(l402, token, resource, "http://h:99999/w"))).toBe("paid");
    expect(code(await verify(l402, token, resource, "http://a b/w?x=1"))).toBe("paid");
    expect(code(await verify(l402, token, resource, "http://h:99999/x"))).toBe("l402_path_mismatch");
  });

  it("takes the paywall's terms: an uncounted token costs the price once and serves until it expires", async () => {
    const uncounted = { ...resource, credential: { lifetimeSeconds: 120, requestsMax: null } };
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged(scheme(), uncounted);
    expect((await getInvoice(db, { tenantId, id: invoiceId }))?.amount).toBe(2_000n);
    expect(readMacaroon(Buffer.from(macaroon, "base64"))?.conditions).toEqual([
      "services=weather:0",
      `weather_valid_until=${Math.floor(clockMs / 1000) + 120}`,
      "weather_path=/w",
    ]);
    await pay(invoiceId, paymentHash);
    for (let i = 0; i < 5; i += 1)
      expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`, uncounted))).toBe("paid");
    clockMs += 120_000;
    try {
      expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`, uncounted))).toBe("l402_expired");
    } finally {
      clockMs -= 120_000;
    }
    const counted = { ...resource, credential: { lifetimeSeconds: 60, requestsMax: 7 } };
    const seven = await challenged(scheme(), counted);
    expect((await getInvoice(db, { tenantId, id: seven.invoiceId }))?.amount).toBe(14_000n); // 7 × 2,000 msat
  });

  it("refuses a revoked token, also in a process that remembered it", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    await pay(invoiceId, paymentHash);
    const token = `L402 ${macaroon}:${preimage}`;
    expect(code(await verify(l402, token))).toBe("paid");
    const keyId = rootKeyId(readMacaroon(Buffer.from(macaroon, "base64"))!.identifier);
    expect(await revokeToken(db, { tenantId: "ten_other", keyId })).toBe(false);
    expect(await revokeToken(db, { tenantId, keyId })).toBe(true);
    expect(code(await verify(l402, token))).toBe("l402_unknown_token");
    expect(code(await verify(scheme(), token))).toBe("l402_unknown_token");
  });

  it("remembers at most tokenMemoryEntriesMax tokens; one forgotten is read from its row, counted and refused as before", async () => {
    const statements: string[] = [];
    const l402 = createL402Scheme({
      settlement: { ...settlement, db: recordStatements(db, statements) },
      rail: "toyln",
      nowMs: () => clockMs,
      limits: { tokenRequestsMax: 3, tokenMemoryEntriesMax: 2 },
    });
    try {
      const bought = [];
      for (let i = 0; i < 3; i += 1) {
        const token = await challenged(l402);
        await pay(token.invoiceId, token.paymentHash);
        bought.push(token);
      }
      const [t0, t1, t2] = bought.map(({ macaroon, preimage }) => `L402 ${macaroon}:${preimage}`);
      /** The verdict, and whether the token's row was read (a SELECT: the token was not remembered). */
      const verified = async (token: string) => {
        statements.length = 0;
        const verdict = code(await verify(l402, token));
        return { verdict, read: statements.includes("SELECT") };
      };
      for (const token of [t0!, t1!, t2!]) expect((await verified(token)).verdict).toBe("paid");
      // The last two are remembered; the first was forgotten: its row is read, and its count goes on from the row.
      expect(await verified(t2!)).toEqual({ verdict: "paid", read: false });
      expect(await verified(t1!)).toEqual({ verdict: "paid", read: false });
      expect(await verified(t0!)).toEqual({ verdict: "paid", read: true });
      expect(await verified(t0!)).toEqual({ verdict: "paid", read: false });
      expect(await verified(t0!)).toEqual({ verdict: "l402_requests_exhausted", read: false });
      // Remembering the first again forgot t1: revoked, it is refused from its (deleted) row at once.
      const keyId = rootKeyId(readMacaroon(Buffer.from(bought[1]!.macaroon, "base64"))!.identifier);
      expect(await revokeToken(db, { tenantId, keyId })).toBe(true);
      expect(await verified(t1!)).toEqual({ verdict: "l402_unknown_token", read: true });
    } finally {
      await l402.close?.();
    }
  });

  it("answers at once: a made-up preimage without asking the rail, a settled but unbooked invoice on one lookup", async () => {
    const { l402, macaroon, invoiceId, paymentHash, preimage } = await challenged();
    railLookups.length = 0;
    const madeUp = randomBytes(32).toString("hex");
    let started = performance.now();
    expect(code(await verify(l402, `L402 ${macaroon}:${madeUp}`))).toBe("l402_preimage_mismatch");
    // The right preimage, the invoice neither booked nor settled on the rail: one lookup, refused, no wait.
    expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`))).toBe("l402_invoice_unpaid");
    expect(performance.now() - started).toBeLessThan(500);
    expect(railLookups).toEqual([paymentHash]);
    // LND settled it, the gateway has not booked it yet: served on the rail's word, at once.
    settledOnRail.add(paymentHash);
    started = performance.now();
    expect(code(await verify(l402, `L402 ${macaroon}:${preimage}`))).toBe("paid");
    expect(performance.now() - started).toBeLessThan(500);
    expect(railLookups).toEqual([paymentHash, paymentHash]);
    // Booked later (the rail's event): nothing more is asked of the rail.
    await pay(invoiceId, paymentHash);
    expect(code(await verify(scheme(), `L402 ${macaroon}:${preimage}`))).toBe("paid");
    expect(railLookups).toHaveLength(2);
  });

  it("keeps an unpaid challenge's invoice, and its token, however long past the grace, until its rail knows it was never paid", async () => {
    // LND out of reach (or the process following it down) for longer than the grace: A was settled just before it
    // expired, B never; neither is known to the gateway yet.
    const a = await challenged();
    const b = await challenged();
    const ago = (ms: number) => new Date(Date.now() - ms);
    const aExpiredAt = ago(l402TokenGraceMs + 2 * 3_600_000);
    const bExpiredAt = ago(l402TokenGraceMs + 3_600_000);
    for (const [{ invoiceId }, expiredAt] of [
      [a, aExpiredAt],
      [b, bExpiredAt],
    ] as const) {
      await db.query("UPDATE invoices SET expires_at = $2 WHERE id = $1", [invoiceId, expiredAt]);
      await db.query("UPDATE l402_tokens SET valid_until = $2 WHERE invoice_id = $1", [
        invoiceId,
        ago(l402TokenGraceMs + 60_000),
      ]);
    }
    const kept = async (table: "invoices" | "l402_tokens", column: string) => {
      const rows = await db.query<{ id: string }>(
        `SELECT ${column} AS id FROM ${table} WHERE ${column} = ANY($1::text[])`,
        [`{${a.invoiceId},${b.invoiceId}}`],
      );
      return [a, b].map((c) => rows.some((row) => row.id === c.invoiceId));
    };
    const prune = () => pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 10 });
    // The rail has told nothing yet (no process follows LND): nothing of theirs goes.
    await db.query("DELETE FROM rail_invoices_known WHERE rail = 'toyln'");
    await prune();
    expect(await kept("invoices", "id")).toEqual([true, true]);
    // The rail knows up to an hour before A expired (it last heard from LND then): still nothing goes. Before, both
    // invoices went a day after their tokens expired.
    await recordInvoicesKnown(db, {
      rail: "toyln",
      expiredBeforeMs: aExpiredAt.getTime() - 3_600_000,
      setAside: [],
    });
    await prune();
    expect(await kept("invoices", "id")).toEqual([true, true]);
    expect(await kept("l402_tokens", "invoice_id")).toEqual([true, true]);
    // The stream resumes: A's settlement finds its invoice, and the tenant is credited.
    const invoice = await getInvoice(db, { tenantId, id: a.invoiceId });
    expect(
      await applyReceived(settlement, {
        rail: "toyln",
        reference: a.invoiceId,
        amount: invoice!.amount,
        evidence: { rail: "lightning", paymentHash: a.paymentHash, preimage: a.preimage },
      }),
    ).toBe("applied");
    expect(await getInvoice(db, { tenantId, id: a.invoiceId })).toMatchObject({ status: "paid" });
    // Caught up past both (LND said B was never paid): B's invoice goes with its token; A's, paid, stays.
    await recordInvoicesKnown(db, {
      rail: "toyln",
      expiredBeforeMs: bExpiredAt.getTime() + 60_000,
      setAside: [],
    });
    // A lower one later (a clock set back, a restart on an older look) does not move it back.
    await recordInvoicesKnown(db, {
      rail: "toyln",
      expiredBeforeMs: aExpiredAt.getTime() - 3_600_000,
      setAside: [],
    });
    expect(await prune()).toBeGreaterThanOrEqual(2);
    expect(await kept("invoices", "id")).toEqual([true, false]);
    expect(await kept("l402_tokens", "invoice_id")).toEqual([false, false]);
  });

  it("records every minute up to when the rail knows its invoices' fate, once it knows, and never back", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    let knownMs: number | null = null;
    const first = Date.now() - 600_000;
    const record = startInvoicesKnownRecord({
      sql: db,
      rail: "ln-recorded",
      expiredBeforeMs: () => knownMs,
      setAside: () => [],
      logger: silentLogger,
    });
    const stored = async () => {
      const [row] = await db.query<{ at: Date }>(
        "SELECT expired_before AS at FROM rail_invoices_known WHERE rail = 'ln-recorded'",
      );
      return row?.at.getTime() ?? null;
    };
    try {
      // The rail has not asked LND since its start: nothing is recorded.
      vi.advanceTimersByTime(invoicesKnownRecordEveryMs);
      expect(await stored()).toBeNull();
      knownMs = first;
      vi.advanceTimersByTime(invoicesKnownRecordEveryMs);
      await vi.waitFor(async () => expect(await stored()).toBe(first));
      // An older look (a process restarted on a journal behind the one before) moves nothing back.
      knownMs = first - 3_600_000;
      vi.advanceTimersByTime(invoicesKnownRecordEveryMs);
    } finally {
      await record.stop();
      vi.useRealTimers();
    }
    expect(await stored()).toBe(first);
  });

  it("keeps the invoice of a settlement set aside, and its token, while the rail holds it so; the point moves past it, and the unpaid challenges go", async () => {
    // LND took A's and D's payments, and the gateway refuses their settlement again and again (the rail sets them aside);
    // B and C were never paid. All four expired past the grace.
    const [a, b, c, d] = [await challenged(), await challenged(), await challenged(), await challenged()];
    const ago = (ms: number) => new Date(Date.now() - ms);
    for (const { invoiceId } of [a, b, c, d]) {
      await db.query("UPDATE invoices SET expires_at = $2 WHERE id = $1", [
        invoiceId,
        ago(l402TokenGraceMs + 2 * 3_600_000),
      ]);
      await db.query("UPDATE l402_tokens SET valid_until = $2 WHERE invoice_id = $1", [
        invoiceId,
        ago(l402TokenGraceMs + 60_000),
      ]);
    }
    const kept = async (table: "invoices" | "l402_tokens", column: string) => {
      const rows = await db.query<{ id: string }>(
        `SELECT ${column} AS id FROM ${table} WHERE ${column} = ANY($1::text[])`,
        [`{${[a, b, c, d].map((x) => x.invoiceId).join(",")}}`],
      );
      return [a, b, c, d].map((x) => rows.some((row) => row.id === x.invoiceId));
    };
    const prune = () => pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 10 });
    const recorded = async () => {
      const [point] = await db.query<{ at: Date }>(
        "SELECT expired_before AS at FROM rail_invoices_known WHERE rail = 'toyln'",
      );
      const listed = await db.query<{ reference: string }>(
        "SELECT reference FROM rail_invoices_set_aside WHERE rail = 'toyln' ORDER BY reference",
      );
      return { atMs: point?.at.getTime() ?? null, setAside: listed.map((row) => row.reference) };
    };
    // The rail's view: its point past all four, A and D set aside. Before, A and D held the point at their expiry for as
    // long as they stayed set aside (days, maybe), and B and C, and every unpaid challenge since, waited with them.
    const knownMs = Date.now() - 60_000;
    let setAside = [d.invoiceId, a.invoiceId];
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const record = startInvoicesKnownRecord({
      sql: db,
      rail: "toyln",
      expiredBeforeMs: () => knownMs,
      setAside: () => setAside,
      logger: silentLogger,
    });
    try {
      vi.advanceTimersByTime(invoicesKnownRecordEveryMs);
      await vi.waitFor(async () => expect((await recorded()).atMs).toBe(knownMs));
      await prune();
      // B's and C's invoices go with their tokens; A's and D's stay, and their tokens with them (found only through
      // them). Before, the point past them let A's and D's go too: their settlement came back not_ours.
      expect(await kept("invoices", "id")).toEqual([true, false, false, true]);
      expect(await kept("l402_tokens", "invoice_id")).toEqual([true, false, false, true]);
      expect(await recorded()).toEqual({ atMs: knownMs, setAside: [a.invoiceId, d.invoiceId].sort() });
      // Applicable again: A's settlement finds its invoice, and the tenant is credited. D's leaves the list unpaid
      // (LND no longer knows it). The point unchanged, the list is recorded anew.
      const invoice = await getInvoice(db, { tenantId, id: a.invoiceId });
      expect(
        await applyReceived(settlement, {
          rail: "toyln",
          reference: a.invoiceId,
          amount: invoice!.amount,
          evidence: { rail: "lightning", paymentHash: a.paymentHash, preimage: a.preimage },
        }),
      ).toBe("applied");
      setAside = [];
      vi.advanceTimersByTime(invoicesKnownRecordEveryMs);
      await vi.waitFor(async () => expect((await recorded()).setAside).toEqual([]));
    } finally {
      await record.stop();
      vi.useRealTimers();
    }
    await prune();
    // A's invoice, paid, stays as money in; D's goes with its token.
    expect(await kept("invoices", "id")).toEqual([true, false, false, false]);
    expect(await kept("l402_tokens", "invoice_id")).toEqual([false, false, false, false]);
    expect(await getInvoice(db, { tenantId, id: a.invoiceId })).toMatchObject({ status: "paid" });
  });

  it("prunes tokens expired for longer than the grace period, every tenant's, in batches", async () => {
    const old = await challenged();
    const recent = await challenged();
    await recordInvoicesKnown(db, { rail: "toyln", expiredBeforeMs: Date.now(), setAside: [] });
    const keyOf = (macaroon: string) => rootKeyId(readMacaroon(Buffer.from(macaroon, "base64"))!.identifier);
    // The token and its challenge's invoice (which expires before it) age together.
    const ageBy = async (macaroon: string, ms: number) => {
      const ago = "now() - make_interval(secs => $2::double precision / 1000)";
      await db.query(
        `UPDATE invoices SET expires_at = ${ago} WHERE id = (SELECT invoice_id FROM l402_tokens WHERE key_id = $1)`,
        [keyOf(macaroon), ms],
      );
      await db.query(`UPDATE l402_tokens SET valid_until = ${ago} WHERE key_id = $1`, [keyOf(macaroon), ms]);
    };
    await ageBy(old.macaroon, l402TokenGraceMs + 60_000);
    await ageBy(recent.macaroon, l402TokenGraceMs - 60_000);
    const expiredBefore = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM l402_tokens WHERE valid_until < now() - make_interval(secs => $1::double precision / 1000)",
      [l402TokenGraceMs],
    );
    expect(await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 1 })).toBe(expiredBefore[0]!.n);
    const left = await db.query<{ key_id: string }>(
      "SELECT key_id FROM l402_tokens WHERE key_id = ANY($1::text[])",
      [`{${keyOf(old.macaroon)},${keyOf(recent.macaroon)}}`],
    );
    expect(left.map((row) => row.key_id)).toEqual([keyOf(recent.macaroon)]);
    expect(await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 1 })).toBe(0);
    // A pruned token is no longer known.
    expect(code(await verify(scheme(), `L402 ${old.macaroon}:${old.preimage}`))).toBe("l402_unknown_token");
  });
  it("deletes with a token expired past the grace its challenge's invoice when nothing was paid into it; a paid one stays", async () => {
    const unpaid = await challenged();
    const paid = await challenged();
    await pay(paid.invoiceId, paid.paymentHash);
    await recordInvoicesKnown(db, { rail: "toyln", expiredBeforeMs: Date.now(), setAside: [] });
    // Its token past the grace, its invoice expired only lately: the invoice waits for its own day, and its token with
    // it (the invoice is found only through its token: deleted alone, it left the invoice for good).
    const lately = await challenged();
    const live = await challenged();
    const ago = (ms: number) => `now() - make_interval(secs => ${ms}::double precision / 1000)`;
    const past = l402TokenGraceMs + 60_000;
    for (const [{ invoiceId }, invoiceExpiredMs] of [
      [unpaid, past],
      [paid, past],
      [lately, 60_000],
    ] as const) {
      await db.query(`UPDATE l402_tokens SET valid_until = ${ago(past)} WHERE invoice_id = $1`, [invoiceId]);
      await db.query(`UPDATE invoices SET expires_at = ${ago(invoiceExpiredMs)} WHERE id = $1`, [invoiceId]);
    }
    expect(await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 2 })).toBeGreaterThanOrEqual(2);
    const ids = [unpaid, paid, lately, live].map((c) => c.invoiceId);
    const kept = async (table: "invoices" | "l402_tokens", column: string) => {
      const rows = await db.query<{ id: string }>(
        `SELECT ${column} AS id FROM ${table} WHERE ${column} = ANY($1::text[])`,
        [`{${ids.join(",")}}`],
      );
      return ids.map((id) => rows.some((row) => row.id === id));
    };
    // Before: every invoice stayed, an unpaid challenge's as a paid one's.
    expect(await kept("invoices", "id")).toEqual([false, true, true, true]);
    expect(await kept("l402_tokens", "invoice_id")).toEqual([false, false, true, true]);
    expect(await getInvoice(db, { tenantId, id: paid.invoiceId })).toMatchObject({ status: "paid" });
    // The token still valid serves once paid.
    await pay(live.invoiceId, live.paymentHash);
    expect(code(await verify(scheme(), `L402 ${live.macaroon}:${live.preimage}`))).toBe("paid");
  });

  it("prunes for at most one pass's time: a pass cut short keeps what it deleted, the next deletes the rest", async () => {
    const expired = [await challenged(), await challenged(), await challenged()];
    await recordInvoicesKnown(db, { rail: "toyln", expiredBeforeMs: Date.now(), setAside: [] });
    // Expired before any token left by the tests above (one waits for its invoice's day): a batch reads the oldest.
    for (const [table, column, key] of [
      ["l402_tokens", "valid_until", "invoice_id"],
      ["invoices", "expires_at", "id"],
    ] as const)
      await db.query(
        `UPDATE ${table} SET ${column} = now() - make_interval(secs => $2::double precision / 1000)
          WHERE ${key} = ANY($1::text[])`,
        [`{${expired.map((c) => c.invoiceId).join(",")}}`, 2 * l402TokenGraceMs],
      );
    // A clock an hour later at each reading: the pass is over after its first statement.
    let atMs = 0;
    const nowMs = () => (atMs += 3_600_000);
    // Before: nowMs was not read and the loop ran until a statement deleted fewer than batchMax (3 here).
    expect(await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 1, nowMs })).toBe(1);
    expect(await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax: 1 })).toBeGreaterThanOrEqual(2);
    const left = await db.query("SELECT 1 FROM l402_tokens WHERE invoice_id = ANY($1::text[])", [
      `{${expired.map((c) => c.invoiceId).join(",")}}`,
    ]);
    expect(left).toHaveLength(0);
  });

  it("says once a pass, naming the rail and how far behind, when its invoices are known only up to days ago", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const warned: { fields: unknown; message: string }[] = [];
    const warn = ((fields: unknown, message?: string) =>
      warned.push({ fields, message: message ?? "" })) as LogFn;
    const logger: Logger = { ...silentLogger, warn, child: () => logger };
    // One rail has known its invoices' fate only up to three days ago (an invoice it can neither deliver nor have LND
    // answer for holds it, or LND has been out of reach since): no unpaid challenge of its since goes. The other's
    // point trails by the minutes of its pass over long-expired invoices.
    const stuckMs = Date.now() - 3 * 24 * 3_600_000;
    await recordInvoicesKnown(db, { rail: "ln-stuck", expiredBeforeMs: stuckMs, setAside: [] });
    await recordInvoicesKnown(db, { rail: "ln-lately", expiredBeforeMs: Date.now() - 600_000, setAside: [] });
    const prune = startL402TokenPrune({ sql: db, logger });
    try {
      vi.advanceTimersByTime(l402TokenPruneEveryMs);
    } finally {
      await prune.stop(); // waits for the pass
      vi.useRealTimers();
      await db.query("DELETE FROM rail_invoices_known WHERE rail IN ('ln-stuck', 'ln-lately')");
    }
    // Before: nothing said, however long the rail stayed behind.
    expect(warned).toEqual([
      {
        fields: {
          rail: "ln-stuck",
          behindHours: 72,
          expiredBefore: new Date(stuckMs).toISOString(),
          movedAt: expect.any(String),
        },
        message: expect.stringContaining("unpaid challenges since are kept"),
      },
    ]);
    expect(invoicesKnownLagMsMax).toBeLessThan(3 * 24 * 3_600_000);
  });

  it("prunes in batches that each read at most batchMax tokens: the waiting ones, the oldest, are read once a pass, not again by every batch", async () => {
    // LND out of reach for three days: the rail knows its invoices' fate only up to then.
    await db.query("DELETE FROM rail_invoices_known WHERE rail = 'toyln'");
    await recordInvoicesKnown(db, {
      rail: "toyln",
      expiredBeforeMs: Date.now() - 3 * 24 * 3_600_000,
      setAside: [],
    });
    const waiting = [];
    for (let n = 0; n < 20; n++) waiting.push(await challenged());
    const paid = [];
    for (let n = 0; n < 6; n++) {
      const c = await challenged();
      await pay(c.invoiceId, c.paymentHash);
      paid.push(c);
    }
    const ago = (ms: number) => `now() - make_interval(secs => ${ms}::double precision / 1000)`;
    const idsOf = (cs: readonly { invoiceId: string }[]) => `{${cs.map((c) => c.invoiceId).join(",")}}`;
    // The unpaid challenges of the days LND was away: their tokens expired first, all at one moment (a burst of
    // requests without a token), their invoices after the point. The paid ones' tokens expired after them, and go.
    await db.query(
      `UPDATE l402_tokens SET valid_until = ${ago(2 * l402TokenGraceMs)} WHERE invoice_id = ANY($1::text[])`,
      [idsOf(waiting)],
    );
    await db.query(
      `UPDATE invoices SET expires_at = ${ago(2 * l402TokenGraceMs + 1_800_000)} WHERE id = ANY($1::text[])`,
      [idsOf(waiting)],
    );
    await db.query(
      `UPDATE l402_tokens SET valid_until = ${ago(l402TokenGraceMs + 3_600_000)} WHERE invoice_id = ANY($1::text[])`,
      [idsOf(paid)],
    );
    // The rows each batch reads of l402_tokens, as on a table of millions, where the planner takes the index (on a few
    // rows a scan of them all costs less, whatever the statement): run once under EXPLAIN ANALYZE, rolled back.
    const read: number[] = [];
    const rowsRead = (node: PlanNode): number =>
      (node["Relation Name"] === "l402_tokens" && node["Node Type"].endsWith("Scan")
        ? (node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0)) * node["Actual Loops"]
        : 0) + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child), 0);
    const explain = async (text: string, params: readonly unknown[] | undefined) => {
      const rollback = new Error("rollback");
      await db
        .transaction(async (tx) => {
          await tx.query("SET LOCAL enable_seqscan = off");
          const [row] = await tx.query<{ "QUERY PLAN": { Plan: PlanNode }[] }>(
            `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
            params,
          );
          read.push(rowsRead(row!["QUERY PLAN"][0]!.Plan));
          throw rollback;
        })
        .catch((error: unknown) => {
          if (error !== rollback) throw error;
        });
    };
    const explained: Sql = {
      query: async (text, params) => {
        if (text.includes("DELETE FROM l402_tokens")) await explain(text, params);
        return db.query(text, params);
      },
    };
    const batchMax = 4;
    expect(await pruneL402Tokens(explained, { graceMs: l402TokenGraceMs, batchMax })).toBeGreaterThanOrEqual(
      paid.length,
    );
    const kept = async (
      table: "invoices" | "l402_tokens",
      column: string,
      cs: readonly { invoiceId: string }[],
    ) => (await db.query(`SELECT 1 FROM ${table} WHERE ${column} = ANY($1::text[])`, [idsOf(cs)])).length;
    expect(await kept("l402_tokens", "invoice_id", paid)).toBe(0);
    expect(await kept("invoices", "id", paid)).toBe(paid.length);
    expect(await kept("l402_tokens", "invoice_id", waiting)).toBe(waiting.length);
    expect(await kept("invoices", "id", waiting)).toBe(waiting.length);
    // Each batch: its batchMax tokens, and each of them found again by its key (the delete). Before, each batch read
    // every waiting token (20, with a join and three lookups each) before the first it could delete: 28 rows, then
    // 24, this test alone.
    expect(read.length).toBeGreaterThan(1);
    expect(Math.max(...read)).toBeLessThanOrEqual(2 * batchMax);
    // Caught up: they go at the next pass.
    await recordInvoicesKnown(db, { rail: "toyln", expiredBeforeMs: Date.now(), setAside: [] });
    await pruneL402Tokens(db, { graceMs: l402TokenGraceMs, batchMax });
    expect(await kept("invoices", "id", waiting)).toBe(0);
  });
});

/** A node of EXPLAIN (FORMAT JSON)'s plan, as far as the prune's test reads it. */
type PlanNode = {
  "Node Type": string;
  "Relation Name"?: string;
  "Actual Rows": number;
  "Actual Loops": number;
  "Rows Removed by Filter"?: number;
  Plans?: PlanNode[];
};

describe("a paywall's L402 token price", () => {
  // One invoice is at most LND's ceiling (the rail's snapshot, checked by createInvoice): 4,294,967,295,000 msat, which
  // 1,000 requests at 4,294,967,295 msat make exactly.
  const most = lightningInvoiceMsatMax;
  const perRequestAtMost = most / 1_000n;
  const usd = (amount: bigint) => ({ asset: assets.USD, amount });
  const btc = (amount: bigint) => ({ asset: assets.BTC, amount });
  /** A US cent is 10,000 µUSD; a millisatoshi 1 µUSD (BTC at $100,000). */
  const rates = {
    usdRate: (asset: string) => ({ microUsd: asset === "USD" ? 10_000n : 1n, perMinorUnits: 1n }),
  };
  const deps = () => ({
    sql: db,
    accounts: settlement.accounts,
    schemes: [scheme()],
    rates,
    nowMs: Date.now,
  });
  const fields = (
    path: string,
    price: PaywallFields["price"],
    tokenRequestsMax: number | null,
  ): PaywallFields => ({
    resource: path,
    description: "priced",
    mimeType: "application/json",
    price,
    offers: [{ scheme: "l402", rail: "toyln" }],
    accountIds: [resource.accountId],
    split: [],
    tokenLifetimeSeconds: 3600,
    tokenRequestsMax,
    metadata: {},
  });
  const add = (path: string, price: PaywallFields["price"], requestsMax: number | null) =>
    addPaywall(deps(), { tenantId, fields: fields(path, price, requestsMax) });
  const paywalls = async () =>
    Number((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM paywalls"))[0]!.n);

  it("refuses, made or changed, a paywall whose token costs more than one invoice can be; the most is taken and invoiced", async () => {
    const before = await paywalls();
    // Before: taken, and every challenge then failed amount_too_large, answered 503 paywall_rail_unavailable for good.
    expect(await add("/priced/over", btc(perRequestAtMost), 1_001)).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
      param: "l402.token_requests_max",
    });
    // The schema's most requests at about 4 sat each.
    expect(await add("/priced/many", btc(4_295n), 1_000_000_000)).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
    });
    expect(await add("/priced/once", btc(most + 1n), null)).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
      param: "price.amount",
    });
    expect(await paywalls()).toBe(before);

    const added = await add("/priced/most", btc(perRequestAtMost), 1_000);
    if (!added.ok) throw new Error(added.message);
    const check = createPaywall({ sql: db, tenantId, schemes: deps().schemes, rates });
    const verdict = await check({ method: "GET", url: "http://127.0.0.1/priced/most", headers: {} });
    expect(verdict).toMatchObject({ kind: "challenge", status: 402 });
    const [invoiced] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1 AND amount = $2",
      [tenantId, most],
    );
    expect(invoiced!.n).toBe(1);

    const change = (changed: Partial<PaywallFields>) =>
      updatePaywall(deps(), { tenantId, id: added.paywall.id, fields: changed });
    expect(await change({ tokenRequestsMax: 1_001 })).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
    });
    expect(await change({ price: btc(perRequestAtMost + 1n) })).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
      param: "l402.token_requests_max",
    });
    expect(await getPaywall(db, { tenantId, id: added.paywall.id })).toMatchObject({
      price: { amount: perRequestAtMost },
      tokenRequestsMax: 1_000,
    });
    expect(await change({ price: btc(most), tokenRequestsMax: null })).toMatchObject({ ok: true });
  });

  it("checks a price in another asset at the rate now, converted as the 402 converts it", async () => {
    // 1 cent is 10,000 msat: 429,496,729 requests are 4,294,967,290,000 msat, one more is past the most.
    expect(await add("/priced/usd-over", usd(1n), 429_496_730)).toMatchObject({
      ok: false,
      refusal: "amount_too_large",
      message: expect.stringContaining("at the rate now"),
    });
    expect(await add("/priced/usd-most", usd(1n), 429_496_729)).toMatchObject({ ok: true });
  });
});
