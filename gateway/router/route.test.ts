import { describe, expect, it } from "vitest";
import type { Asset, Destination, RailSnapshot } from "../../core/index.ts";
import {
  btc,
  evmL1Rail,
  evmL2Rail,
  evmRail,
  fiatRail,
  internalRail,
  lightningRail,
  staticSnapshot,
  usd,
  usdc,
} from "./fixtures.ts";
import { prepareSnapshot, RouterInputError, route } from "./index.ts";
import type { ExclusionReason, PayeeTarget, PaymentIntent, RoutePolicy, Snapshot } from "./types.ts";

const toAddress: Destination = { kind: "evm_address", address: "0x00000000000000000000000000000000000000aa" };
const toSplit: Destination = { kind: "evm_split", splitId: "0x01" };
const toAccount: Destination = { kind: "account", accountId: "acct_1" };
const toInvoice: Destination = { kind: "bolt11", invoice: "lnbcrt1..." };
const toNode: Destination = { kind: "lightning_node", pubkey: "02ab" };
const toStripe: Destination = { kind: "stripe_account", accountId: "acct_stripe" };
const eur: Asset = { code: "EUR", scale: 2, ledger: 9 };

const allRails = [internalRail, evmRail, lightningRail, fiatRail];

describe("route, internal and evm", () => {
  const snapshot = prepareSnapshot(staticSnapshot([internalRail, evmRail]));

  it("sends to a Switchyard account over the internal rail at zero cost", () => {
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toAccount }, snapshot, {});
    expect(decision.chosen?.rail).toBe("internal");
    expect(decision.chosen?.cost.totalMicroUsd).toBe(0n);
    expect(decision.chosen?.amount).toBe(1_000_000n);
    expect(decision.amountMicroUsd).toBe(1_000_000n);
    expect(decision.excluded).toEqual([
      expect.objectContaining({ rail: "evm", reason: "unreachable_destination" }),
    ]);
  });

  it("sends to a 0x address over evm, costing gas × price × ETH", () => {
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toAddress }, snapshot, {});
    expect(decision.chosen?.rail).toBe("evm");
    // 65 000 gas × 0.01 gwei × 3e-9 micro-USD per wei = 1 950 micro-USD.
    expect(decision.chosen?.cost.networkMicroUsd).toBe(1_950n);
    expect(decision.chosen?.cost.totalMicroUsd).toBe(1_950n);
    expect(decision.excluded.map((e) => [e.rail, e.reason])).toEqual([
      ["internal", "unreachable_destination"],
    ]);
  });

  it("gives the same decision for a plain snapshot as for a prepared one, and ignores a stale preparation", () => {
    const intent: PaymentIntent = { asset: usdc, amount: 5n, destination: toAddress };
    expect(route(intent, staticSnapshot([internalRail, evmRail]), {})).toEqual(route(intent, snapshot, {}));
    const stale = { ...snapshot, rails: [internalRail, { ...evmRail, available: false }] };
    expect(route(intent, stale, {}).excluded.map((e) => e.reason)).toContain("rail_unavailable");
  });

  it("refuses a non-positive amount with a typed error", () => {
    expect(() => route({ asset: usdc, amount: 0n, destination: toAddress }, snapshot, {})).toThrow(
      RouterInputError,
    );
  });
});

type CostCase = {
  name: string;
  rails: RailSnapshot[];
  intent: PaymentIntent;
  policy?: RoutePolicy;
  chosen: string;
  amount: bigint;
  cost: { network: bigint; provider: bigint; fx: bigint; failure: bigint; latency?: bigint };
};

const costCases: CostCase[] = [
  {
    name: "Lightning: 1 USDC → 1 666 666 msat at 60 000 USD/BTC; routing 1 000 + 500 ppm; 0.5 % spread",
    rails: allRails,
    intent: { asset: usdc, amount: 1_000_000n, destination: toInvoice },
    chosen: "lightning",
    amount: 1_666_666n, // floor(1 000 000 × 5 / 3)
    // routing: 1 000 + ceil(1 666 666 × 500 / 1e6) = 1 834 msat → ceil(1 834 × 3 / 5) = 1 101 micro-USD
    cost: { network: 1_101n, provider: 0n, fx: 5_000n, failure: 0n },
  },
  {
    name: "keysend to a node key goes to Lightning too; a BTC payment needs no FX",
    rails: allRails,
    intent: { asset: btc, amount: 5_000_000n, destination: toNode },
    chosen: "lightning",
    amount: 5_000_000n,
    // 1 000 + 2 500 = 3 500 msat → 2 100 micro-USD
    cost: { network: 2_100n, provider: 0n, fx: 0n, failure: 0n },
  },
  {
    name: "fiat: 10.00 USD pays 30 c + 2.9 % = 59 c",
    rails: allRails,
    intent: { asset: usd, amount: 1_000n, destination: toStripe },
    chosen: "fiat",
    amount: 1_000n,
    cost: { network: 0n, provider: 590_000n, fx: 0n, failure: 0n },
  },
  {
    name: "fiat: the PSP's minimum fee applies when fixed + percentage is below it",
    rails: [{ ...fiatRail, feeMin: 50n }],
    intent: { asset: usd, amount: 100n, destination: toStripe },
    chosen: "fiat",
    amount: 100n,
    cost: { network: 0n, provider: 500_000n, fx: 0n, failure: 0n },
  },
  {
    name: "fiat from USDC: 1 USDC → 100 c, fee 33 c, 1 % spread on 1 USD",
    rails: allRails,
    intent: { asset: usdc, amount: 1_000_000n, destination: toStripe },
    chosen: "fiat",
    amount: 100n,
    cost: { network: 0n, provider: 330_000n, fx: 10_000n, failure: 0n },
  },
  {
    name: "a pair spread from the snapshot wins over the rail's own",
    rails: allRails,
    intent: { asset: usdc, amount: 1_000_000n, destination: toStripe },
    policy: {},
    chosen: "fiat",
    amount: 100n,
    cost: { network: 0n, provider: 330_000n, fx: 2_000n, failure: 0n },
  },
  {
    name: "expected cost of failure: 2 failures in 10 with a prior of one success",
    rails: [{ ...evmRail, successes: 8, failures: 2 }],
    intent: { asset: usdc, amount: 1_000_000n, destination: toSplit },
    chosen: "evm",
    amount: 1_000_000n,
    // ceil(2 × (1 950 + 10 000) / 11) = 2 173
    cost: { network: 1_950n, provider: 0n, fx: 0n, failure: 2_173n },
  },
  {
    name: "latency priced at 100 micro-USD a second",
    rails: [evmRail],
    intent: { asset: usdc, amount: 1_000_000n, destination: toAddress },
    policy: { latencyCostMicroUsdPerS: 100n },
    chosen: "evm",
    amount: 1_000_000n,
    cost: { network: 1_950n, provider: 0n, fx: 0n, failure: 0n, latency: 400n },
  },
];

describe("route: the cost model", () => {
  it.each(costCases)("$name", (c) => {
    const base = staticSnapshot(c.rails);
    const snapshot: Snapshot = c.name.startsWith("a pair spread")
      ? { ...base, fxSpreadsPpm: { "USDC->USD": 2_000n } }
      : base;
    const decision = route(c.intent, prepareSnapshot(snapshot), c.policy ?? {});
    const chosen = decision.chosen;
    expect(chosen?.rail).toBe(c.chosen);
    expect(chosen?.amount).toBe(c.amount);
    const latency = c.cost.latency ?? 0n;
    const fee = c.cost.network + c.cost.provider + c.cost.fx;
    expect(chosen?.cost).toEqual({
      networkMicroUsd: c.cost.network,
      providerMicroUsd: c.cost.provider,
      fxMicroUsd: c.cost.fx,
      failureMicroUsd: c.cost.failure,
      latencyMicroUsd: latency,
      feeMicroUsd: fee,
      totalMicroUsd: fee + c.cost.failure + latency,
    });
    // Every other rail is excluded and says why.
    expect(decision.candidates.length + decision.excluded.length).toBe(c.rails.length);
  });
});

type ExclusionCase = {
  name: string;
  rail: RailSnapshot;
  intent: PaymentIntent;
  policy?: RoutePolicy;
  reason: ExclusionReason;
};

const oneUsdcToAddress: PaymentIntent = { asset: usdc, amount: 1_000_000n, destination: toAddress };
const exclusionCases: ExclusionCase[] = [
  {
    name: "denied by the policy",
    rail: evmRail,
    intent: oneUsdcToAddress,
    policy: { deniedRails: ["evm"] },
    reason: "not_allowed",
  },
  {
    name: "not in the allowed list",
    rail: evmRail,
    intent: oneUsdcToAddress,
    policy: { allowedRails: ["lightning"] },
    reason: "not_allowed",
  },
  {
    name: "unavailable",
    rail: { ...evmRail, available: false },
    intent: oneUsdcToAddress,
    reason: "rail_unavailable",
  },
  {
    name: "circuit open",
    rail: { ...evmRail, circuit: "open" },
    intent: oneUsdcToAddress,
    reason: "circuit_open",
  },
  {
    name: "a 0x address is not reachable by Lightning",
    rail: lightningRail,
    intent: oneUsdcToAddress,
    reason: "unreachable_destination",
  },
  {
    name: "a BOLT11 invoice is not reachable by evm",
    rail: evmRail,
    intent: { ...oneUsdcToAddress, destination: toInvoice },
    reason: "unreachable_destination",
  },
  {
    name: "a Stripe account is not reachable by internal",
    rail: internalRail,
    intent: { ...oneUsdcToAddress, destination: toStripe },
    reason: "unreachable_destination",
  },
  {
    name: "an account is not reachable by fiat",
    rail: fiatRail,
    intent: { ...oneUsdcToAddress, destination: toAccount },
    reason: "unreachable_destination",
  },
  {
    name: "an evm rail claiming to reach accounts still does not",
    rail: { ...evmRail, reaches: ["account", "evm_address"] },
    intent: { ...oneUsdcToAddress, destination: toAccount },
    reason: "unreachable_destination",
  },
  {
    name: "a payment asset without a USD rate",
    rail: evmRail,
    intent: { ...oneUsdcToAddress, asset: eur },
    reason: "no_fx_rate",
  },
  {
    name: "a rail asset without a USD rate",
    rail: { ...evmRail, asset: eur },
    intent: oneUsdcToAddress,
    reason: "no_fx_rate",
  },
  {
    name: "a gas token without a USD rate",
    rail: { ...evmRail, networkFee: { kind: "evm_gas", gasUnits: 1n, gasPriceWei: 1n, nativeAsset: "POL" } },
    intent: oneUsdcToAddress,
    reason: "no_fx_rate",
  },
  {
    name: "below the rail's minimum",
    rail: fiatRail,
    intent: { asset: usd, amount: 49n, destination: toStripe },
    reason: "below_minimum",
  },
  {
    name: "below the minimum after conversion (0.4 USDC → 40 c)",
    rail: fiatRail,
    intent: { asset: usdc, amount: 400_000n, destination: toStripe },
    reason: "below_minimum",
  },
  {
    name: "above the rail's maximum",
    rail: { ...evmRail, amountMax: 999_999n },
    intent: oneUsdcToAddress,
    reason: "above_maximum",
  },
  {
    name: "more than the hot wallet holds",
    rail: { ...evmRail, liquidity: 999_999n },
    intent: oneUsdcToAddress,
    reason: "insufficient_liquidity",
  },
  {
    name: "more than the outbound capacity",
    rail: { ...lightningRail, liquidity: 1_000_000n },
    intent: { ...oneUsdcToAddress, destination: toInvoice },
    reason: "insufficient_liquidity",
  },
  {
    name: "slower than allowed",
    rail: evmRail,
    intent: oneUsdcToAddress,
    policy: { maxLatencyMs: 3_999 },
    reason: "latency_above_max",
  },
  {
    name: "fee above the absolute cap",
    rail: evmRail,
    intent: oneUsdcToAddress,
    policy: { maxFeeMicroUsd: 1_949n },
    reason: "fee_above_max",
  },
  {
    name: "fee above the bps cap (19 bps of 1 USD = 1 900)",
    rail: evmRail,
    intent: oneUsdcToAddress,
    policy: { maxFeeBps: 19 },
    reason: "fee_above_max",
  },
];

describe("route: every exclusion reason", () => {
  it.each(exclusionCases)("$name → $reason", (c) => {
    const decision = route(c.intent, prepareSnapshot(staticSnapshot([c.rail])), c.policy ?? {});
    expect(decision.chosen).toBeNull();
    expect(decision.candidates).toEqual([]);
    expect(decision.excluded).toHaveLength(1);
    expect(decision.excluded[0]?.rail).toBe(c.rail.rail);
    expect(decision.excluded[0]?.reason).toBe(c.reason);
    expect(decision.excluded[0]?.detail.length).toBeGreaterThan(0);
  });

  it("says a rail is short of liquidity without the number: the hot wallet's balance is no tenant's fact", () => {
    const decision = route(oneUsdcToAddress, staticSnapshot([{ ...evmRail, liquidity: 987_654n }]), {});
    expect(decision.excluded).toEqual([
      {
        rail: evmRail.rail,
        reason: "insufficient_liquidity",
        detail: "the amount is above what the rail can send now",
      },
    ]);
  });

  it("lets the fee through at exactly the caps", () => {
    const decision = route(oneUsdcToAddress, staticSnapshot([evmRail]), {
      maxFeeMicroUsd: 1_950n,
      maxFeeBps: 20,
    });
    expect(decision.chosen?.cost.feeMicroUsd).toBe(1_950n);
    // Cap: estimate × 1.5 = 2 925, bounded by 1 950 absolute and 2 000 by bps.
    expect(decision.chosen?.feeCapMicroUsd).toBe(1_950n);
    expect(decision.chosen?.feeMax).toBe(1_950n);
  });
});

describe("route: ranking", () => {
  const cheapEvm: RailSnapshot = {
    ...evmRail,
    rail: "evm-cheap",
    networkFee: { kind: "evm_gas", gasUnits: 65_000n, gasPriceWei: 5_000_000n, nativeAsset: "ETH" },
  };
  it("puts the cheapest rail first and keeps the rest as fallbacks", () => {
    const decision = route(oneUsdcToAddress, staticSnapshot([evmRail, cheapEvm, internalRail]), {});
    expect(decision.candidates.map((c) => [c.rail, c.cost.totalMicroUsd])).toEqual([
      ["evm-cheap", 975n],
      ["evm", 1_950n],
    ]);
    expect(decision.chosen?.rail).toBe("evm-cheap");
  });

  it("lets a failing rail lose to a dearer reliable one", () => {
    const flaky = { ...cheapEvm, successes: 1, failures: 9 };
    const decision = route(oneUsdcToAddress, staticSnapshot([evmRail, flaky]), {});
    expect(decision.chosen?.rail).toBe("evm");
    expect(decision.candidates[1]?.rail).toBe("evm-cheap");
  });

  it("breaks ties by latency, then by rail id", () => {
    const fast = { ...evmRail, rail: "evm-z", latencyMs: 1_000 };
    const twin = { ...evmRail, rail: "evm-a" };
    const decision = route(oneUsdcToAddress, staticSnapshot([evmRail, twin, fast]), {});
    expect(decision.candidates.map((c) => c.rail)).toEqual(["evm-z", "evm", "evm-a"]); // "evm" sorts before "evm-a";
  });

  it("reports the snapshot's time with the decision", () => {
    expect(route(oneUsdcToAddress, staticSnapshot([evmRail], 1234), {}).snapshotTakenAtMs).toBe(1234);
  });
});

describe("route: snapshots it does not trust", () => {
  it.each([
    { name: "a negative fee", rail: { ...fiatRail, feeFixed: -1n } },
    { name: "a minimum above the maximum", rail: { ...evmRail, amountMin: 10n, amountMax: 9n } },
    { name: "a negative network fee", rail: { ...internalRail, networkFeeMicroUsd: -5n } },
    { name: "a latency that is not a number", rail: { ...evmRail, latencyMs: Number.NaN } },
    { name: "a chain id that is not a positive integer", rail: { ...evmRail, chainId: 0 } },
  ])("treats a rail reporting $name as unavailable", ({ rail }) => {
    const decision = route(oneUsdcToAddress, staticSnapshot([rail]), {});
    expect(decision.excluded).toEqual([
      expect.objectContaining({
        reason: "rail_unavailable",
        detail: expect.stringContaining("invalid rail snapshot"),
      }),
    ]);
  });

  it("never trusts a negative FX spread from the rate source", () => {
    const snapshot = { ...staticSnapshot([fiatRail]), fxSpreadsPpm: { "USDC->USD": -10_000n } };
    const decision = route({ asset: usdc, amount: 1_000_000n, destination: toStripe }, snapshot, {});
    expect(decision.chosen?.cost.fxMicroUsd).toBe(10_000n); // the rail's own 1 %
  });
});

const onL1: Destination = {
  kind: "evm_address",
  address: "0x00000000000000000000000000000000000000b1",
  chainId: 1,
};
const onL2: Destination = {
  kind: "evm_address",
  address: "0x00000000000000000000000000000000000000b2",
  chainId: 10,
};
const onPolygon: Destination = {
  kind: "evm_address",
  address: "0x00000000000000000000000000000000000000b3",
  chainId: 137,
};
const payee = (...methods: Destination[]): PayeeTarget => ({ kind: "payee", payeeId: "pye_1", methods });

type ReachCase = {
  name: string;
  rails: RailSnapshot[];
  destination: Destination | PayeeTarget;
  /** Per rail: the method its candidate pays, or why it is excluded (and a word of the detail). */
  expected: Record<string, Destination | { reason: ExclusionReason; detail: string }>;
};

const payeeEverywhere = payee(onL1, onL2, toNode, toStripe, toAccount);
const reachCases: ReachCase[] = [
  {
    name: "an address naming chain 10 is reached only by the rail on chain 10",
    rails: [evmL1Rail, evmL2Rail, evmRail],
    destination: onL2,
    expected: {
      "evm-l2": onL2,
      "evm-l1": { reason: "unreachable_destination", detail: "chain 1" },
      evm: { reason: "unreachable_destination", detail: "names none" },
    },
  },
  {
    name: "an address naming no chain is reached by every EVM rail",
    rails: [evmL1Rail, evmL2Rail, evmRail, lightningRail],
    destination: toAddress,
    expected: {
      "evm-l1": toAddress,
      "evm-l2": toAddress,
      evm: toAddress,
      lightning: { reason: "unreachable_destination", detail: "reaches only" },
    },
  },
  {
    name: "a payee on every rail: each rail pays its own method",
    rails: [internalRail, evmL1Rail, evmL2Rail, lightningRail, fiatRail],
    destination: payeeEverywhere,
    expected: {
      internal: toAccount,
      "evm-l1": onL1,
      "evm-l2": onL2,
      lightning: toNode,
      fiat: toStripe,
    },
  },
  {
    name: "a payee's methods on other chains do not reach a rail, whatever else the payee accepts",
    rails: [evmL1Rail, evmL2Rail, evmRail, lightningRail],
    destination: payee(toStripe, onPolygon, toInvoice),
    expected: {
      "evm-l1": { reason: "unreachable_destination", detail: "chain 1" },
      "evm-l2": { reason: "unreachable_destination", detail: "chain 10" },
      evm: { reason: "unreachable_destination", detail: "names none" },
      lightning: toInvoice,
    },
  },
  {
    name: "with several methods a rail reaches, the first listed is paid",
    rails: [evmL2Rail, evmL1Rail, lightningRail],
    destination: payee(toInvoice, toSplit, onL2, toAddress, toNode),
    expected: { "evm-l2": toSplit, "evm-l1": toSplit, lightning: toInvoice },
  },
  {
    name: "an address on no chain listed before the chain's own is paid first",
    rails: [evmL2Rail, evmL1Rail],
    destination: payee(onL2, toAddress),
    expected: { "evm-l2": onL2, "evm-l1": toAddress },
  },
  {
    name: "a payee with no methods reaches nothing",
    rails: [internalRail, evmL2Rail],
    destination: payee(),
    expected: {
      internal: { reason: "unreachable_destination", detail: "reaches only" },
      "evm-l2": { reason: "unreachable_destination", detail: "reaches only" },
    },
  },
];

describe("route: payees and chains", () => {
  it.each(reachCases)("$name", (c) => {
    const decision = route(
      { asset: usdc, amount: 1_000_000n, destination: c.destination },
      prepareSnapshot(staticSnapshot(c.rails)),
      {},
    );
    for (const [rail, want] of Object.entries(c.expected)) {
      const candidate = decision.candidates.find((x) => x.rail === rail);
      if ("reason" in want) {
        expect(candidate).toBeUndefined();
        const exclusion = decision.excluded.find((x) => x.rail === rail);
        expect(exclusion?.reason).toBe(want.reason);
        expect(exclusion?.detail).toContain(want.detail);
      } else {
        expect(candidate?.destination).toBe(want);
      }
    }
    expect(decision.candidates.length + decision.excluded.length).toBe(c.rails.length);
  });

  it("ranks a payee's rails in one cost unit: internal, L2, Lightning, Stripe, then L1 for 1 USDC", () => {
    const decision = route(
      { asset: usdc, amount: 1_000_000n, destination: payeeEverywhere },
      prepareSnapshot(staticSnapshot([evmL1Rail, fiatRail, lightningRail, evmL2Rail, internalRail])),
      {},
    );
    // 0; 1 950 gas; 1 101 routing + 5 000 spread; 330 000 + 10 000 spread; 5 850 000 gas.
    expect(decision.candidates.map((c) => [c.rail, c.cost.feeMicroUsd])).toEqual([
      ["internal", 0n],
      ["evm-l2", 1_950n],
      ["lightning", 6_101n],
      ["fiat", 340_000n],
      ["evm-l1", 5_850_000n],
    ]);
  });

  it("prices a payee's method exactly as the method alone, and a plain destination is its own candidate's", () => {
    const snapshot = prepareSnapshot(
      staticSnapshot([internalRail, evmL1Rail, evmL2Rail, lightningRail, fiatRail]),
    );
    const intent: PaymentIntent = { asset: usd, amount: 12_345n, destination: payeeEverywhere };
    for (const candidate of route(intent, snapshot, {}).candidates) {
      const alone = route({ ...intent, destination: candidate.destination }, snapshot, {});
      expect(alone.candidates.find((c) => c.rail === candidate.rail)).toEqual(candidate);
      expect(alone.candidates.every((c) => c.destination === candidate.destination)).toBe(true);
    }
  });
});
