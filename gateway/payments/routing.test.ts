// routeNow's memo (routing.ts): a payment to an account without constraints is routed once per question and
// snapshot, the decision shared, and once per asset and amount: another account's is that decision retargeted;
// anything else that could change the answer asks the router again.
import { describe, expect, it } from "vitest";
import { type Asset, assets, type Rail } from "../../core/index.ts";
import { toyRailSnapshot } from "../../test/support/toy-rail.ts";
import type { AccountRecord } from "../accounts/index.ts";
import { fiatRail, staticSnapshot, usd } from "../router/fixtures.ts";
import { buildSnapshot, prepareSnapshot, route, type Snapshot, staticRateSource } from "../router/index.ts";
import type { CreatePaymentParams, PaymentsDeps } from "./deps.ts";
import { prepare, underPolicy } from "./routing.ts";
import { decisionJson } from "./store.ts";

const tenantId = "ten_memo";
const account = (id: string, asset: Asset = assets.USDC): AccountRecord => ({
  id,
  tenantId,
  kind: "customer",
  asset,
  ledgerAccountId: BigInt(id.length),
  name: id,
  rail: null,
});
const accounts = new Map([
  ["acct_a", account("acct_a")],
  ["acct_b", account("acct_b")],
  ["acct_c", account("acct_c")],
]);

function counted() {
  // Two internal rails, as the composition root makes them: one per asset, reaching accounts.
  const rails = new Map(
    [assets.USDC, assets.USD].map((asset) => {
      const id = `internal-${asset.code.toLowerCase()}`;
      const snapshot = () => ({
        ...toyRailSnapshot(id, 0n),
        kind: "internal" as const,
        asset,
        reaches: ["account" as const],
        latencyMs: 0,
      });
      return [id, { id, kind: "internal", asset, snapshot } as unknown as Rail];
    }),
  );
  const snapshotOf = (takenAtMs: number): Snapshot =>
    buildSnapshot({
      rails: [...rails.values()].map((rail) => rail.snapshot()),
      rateSource: staticRateSource({
        usdRates: {
          USDC: { microUsd: 1n, perMinorUnits: 1n },
          USD: { microUsd: 10_000n, perMinorUnits: 1n },
        },
      }),
      assetCodes: ["USDC", "USD"],
      takenAtMs,
    });
  let current = snapshotOf(1);
  const counter = { calls: 0 };
  const deps = {
    accounts: { tenantAccount: async ({ id }: { id: string }) => accounts.get(id) ?? null },
    rails,
    snapshot: () => current,
    route: (...args: Parameters<typeof route>) => {
      counter.calls += 1;
      return route(...args);
    },
  } as unknown as PaymentsDeps;
  return { deps, counter, refresh: () => (current = snapshotOf(2)) };
}

const params = (over: Partial<CreatePaymentParams> = {}): CreatePaymentParams => ({
  tenantId,
  asset: "USDC",
  amount: "0.000001",
  sourceAccountId: "acct_a",
  destination: { kind: "account", accountId: "acct_b" },
  policy: {},
  metadata: {},
  idempotencyKey: null,
  quoteId: null,
  ...over,
});

async function decisionOf(deps: PaymentsDeps, over: Partial<CreatePaymentParams> = {}) {
  const prepared = await prepare(deps, params(over));
  if (!prepared.ok) throw new Error(`refused: ${JSON.stringify(prepared)}`);
  return prepared.decision;
}

describe("routing a payment to an account", () => {
  it("asks the router once per question on a snapshot, and shares the decision and its JSON", async () => {
    const { deps, counter } = counted();
    const first = await decisionOf(deps);
    const second = await decisionOf(deps);
    expect(counter.calls).toBe(1);
    expect(second).toBe(first);
    expect(first.chosen?.rail).toBe("internal-usdc");
    // The other asset's internal rail is excluded as routeNow excludes it, memo or not.
    expect(first.excluded.map((e) => [e.rail, e.reason])).toEqual([["internal-usd", "no_fx_rate"]]);
    const to = { kind: "account" as const, accountId: "acct_b" };
    expect(decisionJson(second, to)).toBe(decisionJson(first, to));
  });

  it("keeps one JSON for payments to different accounts routed alike: the account is the payment's, not stored twice", async () => {
    const { deps } = counted();
    const toB = { kind: "account" as const, accountId: "acct_b" };
    const toC = { kind: "account" as const, accountId: "acct_c" };
    const b = await decisionOf(deps, { destination: toB });
    const c = await decisionOf(deps, { destination: toC });
    expect(c).not.toBe(b);
    expect(c.candidates[0]?.destination).toEqual(toC);
    expect(decisionJson(c, toC)).toBe(decisionJson(b, toB));
    expect(decisionJson(b, toB)).not.toContain("acct_");
  });

  it("answers another account from the same question's decision, as the router would have answered it", async () => {
    const { deps, counter } = counted();
    const toB = { kind: "account" as const, accountId: "acct_b" };
    const toC = { kind: "account" as const, accountId: "acct_c" };
    const b = await decisionOf(deps, { destination: toB });
    const c = await decisionOf(deps, { destination: toC });
    expect(counter.calls).toBe(1);
    expect(await decisionOf(deps, { destination: toC })).toBe(c);
    // The same question asked of the router itself, on an equal snapshot.
    const routed = await decisionOf(counted().deps, { destination: toC });
    expect(c).toEqual(routed);
    expect(c.chosen).toBe(c.candidates[0]);
    expect(c.candidates.every((candidate) => candidate.destination === toC)).toBe(true);
    expect(b.candidates[0]?.destination).toEqual(toB);
    expect(decisionJson(c, toC)).toBe(decisionJson(b, toB));
  });

  it("asks the router again for another account when a decision's chosen candidate is not one of its candidates", async () => {
    const { deps, counter } = counted();
    const routeAsIs = deps.route;
    // A router that hands its chosen candidate as a copy: which candidate another account's copy would choose is not
    // known, so it is not guessed.
    const copying = {
      ...deps,
      route: (...args: Parameters<typeof route>) => {
        const decision = routeAsIs(...args);
        return { ...decision, chosen: decision.chosen === null ? null : { ...decision.chosen } };
      },
    } as PaymentsDeps;
    await decisionOf(copying, { destination: { kind: "account", accountId: "acct_b" } });
    const c = await decisionOf(copying, { destination: { kind: "account", accountId: "acct_c" } });
    expect(counter.calls).toBe(2);
    expect(c.chosen?.destination).toEqual({ kind: "account", accountId: "acct_c" });
  });

  it("asks again for another amount, constraints, or a new snapshot", async () => {
    const { deps, counter, refresh } = counted();
    const base = await decisionOf(deps);
    const otherAmount = await decisionOf(deps, { amount: "0.000002" });
    expect(otherAmount.chosen?.amount).toBe(2n);
    await decisionOf(deps, { destination: { kind: "account", accountId: "acct_c" } });
    await decisionOf(deps, { policy: { maxLatencyMs: 10_000 } });
    await decisionOf(deps, { policy: { maxLatencyMs: 10_000 } });
    expect(counter.calls).toBe(4);
    refresh();
    const afterRefresh = await decisionOf(deps);
    expect(counter.calls).toBe(5);
    expect(afterRefresh).not.toBe(base);
    expect(afterRefresh.snapshotTakenAtMs).toBe(2);
  });
});

describe("a quote's candidates under a payment's tighter fee cap", () => {
  it("give the rail the fee limit a route under that cap gives, rounded down once", () => {
    const snapshot = prepareSnapshot(staticSnapshot([fiatRail]));
    const toStripe = { kind: "stripe_account" as const, accountId: "acct_stripe" };
    let compared = 0;
    for (let amount = 50n; amount <= 20_050n; amount += 97n) {
      const intent = { asset: usd, amount, destination: toStripe };
      const quoted = route(intent, snapshot, {});
      const fee = quoted.chosen!.cost.feeMicroUsd;
      for (const cap of [fee, fee + 1n, fee + 9_999n, fee + 10_000n, fee + 12_345n]) {
        if (cap >= quoted.chosen!.feeCapMicroUsd) continue;
        const under = underPolicy(quoted.candidates, { maxFeeMicroUsd: cap }, quoted.amountMicroUsd);
        const direct = route(intent, snapshot, { maxFeeMicroUsd: cap });
        // Before: the quote's limit scaled down (a second rounding) fell a cent short, as for USD 100.01 capped at
        // its fee of 3.21: the rail was allowed 320 cents of a 321-cent fee, and the payment failed fee_above_max.
        expect(under.candidates[0]!.feeMax).toBe(direct.chosen!.feeMax);
        compared += 1;
      }
    }
    expect(compared).toBeGreaterThan(500);
  });
});

describe("a BOLT11 invoice that names its amount, paid from another asset", () => {
  // BOLT11's own example: 2500u, 250,000 sat. BTC at $95,000.50: a cent is 10,526.26… msat, so no cent amount
  // converts to the invoice's exactly.
  const invoice =
    "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp";
  const asked = 250_000_000n;
  const lightning = {
    ...toyRailSnapshot("lightning", 0n),
    kind: "lightning" as const,
    asset: assets.BTC,
    reaches: ["bolt11" as const],
  };
  const snapshot = buildSnapshot({
    rails: [lightning],
    rateSource: staticRateSource({
      usdRates: {
        USD: { microUsd: 10_000n, perMinorUnits: 1n },
        BTC: { microUsd: 190_001n, perMinorUnits: 200_000n },
      },
    }),
    assetCodes: ["USD", "BTC"],
    takenAtMs: 1,
  });
  const deps = {
    accounts: {
      tenantAccount: async ({ id }: { id: string }) =>
        id === "acct_usd" ? account("acct_usd", assets.USD) : null,
    },
    rails: new Map([
      ["lightning", { id: "lightning", kind: "lightning", asset: assets.BTC } as unknown as Rail],
    ]),
    snapshot: () => snapshot,
    route,
  } as unknown as PaymentsDeps;
  const paying = (amount: string) =>
    prepare(
      deps,
      params({ asset: "USD", amount, sourceAccountId: "acct_usd", destination: { kind: "bolt11", invoice } }),
    );

  it("is paid by the least amount whose conversion reaches it, the rail sending exactly what it asks (every cent amount was refused)", async () => {
    const paid = await paying("237.51");
    if (!paid.ok) throw new Error(`refused: ${JSON.stringify(paid)}`);
    expect(paid.decision.chosen).toMatchObject({ rail: "lightning", amount: asked });
    expect(paid.decision.candidates[0]!.amount).toBe(asked);
    // A cent less converts to less than it asks; a cent more to more than the payer's last cent covers: both refused,
    // naming the amount that pays it.
    for (const amount of ["237.50", "237.52"]) {
      const refused = await paying(amount);
      expect(refused).toMatchObject({ ok: false, refusal: "parameter_invalid", param: "amount" });
      expect(refused.ok ? "" : refused.message).toContain("(237.51 USD at the rate now)");
    }
  });
});
