// Which sends' gas the send-gas pass books: the keys every sender of the rail uses, each to its kind, and for each
// kind and outcome either a caller that books it or the pass — the pass's booker told whose outcome may book it
// first — never both, never neither.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { x402BatchSendKeyPrefix } from "../../core/index.ts";
import { gasBookedBy, kindByPrefix, outcomeOwnerOf, type SendKind, sendKindOf } from "./send-gas.ts";

describe("sendKindOf", () => {
  it("names every kind of send from its key", () => {
    expect(
      [
        "att_01J9ZQ4W3V5X6Y7Z8A9B0C1D2E",
        "approve:att_01J9ZQ4W3V5X6Y7Z8A9B0C1D2E",
        "approve:settle:0xab",
        "settle:0xab",
        "auth:0x12:0x34:0x56",
        "distribute:dist_1",
        "sweep:31337:3f1c",
        "x402-batch:b1",
        "transfer-auth:0x12:0x34",
        "receive-auth:0x12:0x34",
        "mint:0x12",
      ].map(sendKindOf),
    ).toEqual([
      "payout",
      "approve",
      "approve",
      "settle_batch",
      "pay_with_authorization",
      "distribute",
      "sweep",
      "x402_batch",
      "transfer_authorization",
      "receive_authorization",
      "unknown",
    ]);
  });
});

describe("gasBookedBy", () => {
  it("leaves sweeps to their booker, whatever the outcome, and hands every other kind to the pass's booker", () => {
    expect(gasBookedBy("sweep")).toBe("sweep");
    for (const kind of [
      "payout",
      "settle_batch",
      "approve",
      "x402_batch",
      "transfer_authorization",
      "pay_with_authorization",
      "distribute",
      "receive_authorization",
      "unknown",
    ] as const)
      expect(gasBookedBy(kind)).toBeNull();
  });
});

describe("outcomeOwnerOf", () => {
  it("names the payment and netting as the owners of a succeeded payout's and batch's gas, nobody when reverted", () => {
    expect([outcomeOwnerOf("payout", true), outcomeOwnerOf("payout", false)]).toEqual(["payment", null]);
    expect([outcomeOwnerOf("settle_batch", true), outcomeOwnerOf("settle_batch", false)]).toEqual([
      "netting",
      null,
    ]);
  });

  it("names nobody for the approve, splitter calls, authorizations, x402's settlements, sweeps, unknown kinds", () => {
    // x402's: the booker books a single settlement under x402's own id, and a batch only when x402 holds none of it.
    for (const kind of [
      "approve",
      "x402_batch",
      "transfer_authorization",
      "pay_with_authorization",
      "distribute",
      "receive_authorization",
      "sweep",
      "unknown",
    ] as const)
      for (const succeeded of [true, false]) expect(outcomeOwnerOf(kind, succeeded)).toBeNull();
  });
});

// Every key the rail sends under, read from its sources as event-types.test.ts reads the outbox's: each call of the
// journal (sendOnce, sendWithinQueue) and of splitterCall (which sends under the key it is given), with the key
// expression it passes. A new call site fails here until its key is named below, with the kind the pass gives it
// (and so who books its gas: gasBookedBy, outcomeOwnerOf).
const keyExpressionKinds: Readonly<Record<string, readonly SendKind[]>> = {
  "attempt.id": ["payout"], // a payment attempt's id, no colon (payout.ts)
  "sweep.key": ["sweep"], // `sweep:${chainId}:${uuid}` (sweeps.ts)
  key: [], // splitterCall's own parameter, sent as it is: its callers' keys are the ones below
  approve: ["approve"],
  auth: ["pay_with_authorization"],
  distribute: ["distribute"],
  settle: ["settle_batch"],
  batchSendKey: ["x402_batch"], // `${x402BatchSendKeyPrefix}${params.key}` (x402-batch.ts)
  authKey: ["transfer_authorization", "receive_authorization"], // `${auth.method}-auth:…` (authorizations.ts)
};

const sendCall = /\b(?:sendOnce|sendWithinQueue|splitterCall)\(\s*[\w.]+,\s*(`[^`]*`|[\w.]+)\s*,/g;

describe("the keys the rail sends under", () => {
  it("names every key expression passed to the journal, each to a kind the pass knows", () => {
    const found = new Set<string>();
    let sweepsSource = "";
    let x402BatchSource = "";
    for (const entry of readdirSync(import.meta.dirname)) {
      if (!entry.endsWith(".ts") || entry.includes(".test.")) continue;
      const source = readFileSync(path.join(import.meta.dirname, entry), "utf8");
      if (entry === "sweeps.ts") sweepsSource = source;
      if (entry === "x402-batch.ts") x402BatchSource = source;
      for (const match of source.matchAll(sendCall)) {
        const key = match[1]!;
        found.add(key.startsWith("`") ? key.slice(1, key.indexOf(":")) : key);
      }
    }
    expect([...found].sort()).toEqual(Object.keys(keyExpressionKinds).sort());
    expect(sweepsSource).toContain("`sweep:${");
    expect(x402BatchSource).toMatch(/batchSendKey = `\$\{x402BatchSendKeyPrefix\}\$\{/);
    const kinds = [
      sendKindOf("att_01J9ZQ4W3V5X6Y7Z8A9B0C1D2E"),
      sendKindOf("sweep:31337:3f1c"),
      sendKindOf(`${x402BatchSendKeyPrefix}x`),
      ...Object.keys(kindByPrefix).map((prefix) => sendKindOf(`${prefix}:x`)),
      sendKindOf("transfer-auth:x"),
      sendKindOf("receive-auth:x"),
    ];
    expect(kinds).not.toContain("unknown");
    // Every prefix classified is one the rail sends under, and every key it sends under is classified.
    expect(new Set(kinds)).toEqual(new Set(Object.values(keyExpressionKinds).flat()));
  });
});
