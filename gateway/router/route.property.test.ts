// Property tests: random rails, rates, payments and policies, checked against a reference model written
// plainly with the money helpers, and against invariants that hold whatever the model says.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Destination, DestinationKind, RailKind, RailSnapshot, UsdRate } from "../../core/index.ts";
import { type Asset, divCeil, divFloor } from "../../core/index.ts";
import { btc, usd, usdc } from "./fixtures.ts";
import { convert, fromMicroUsd, prepareSnapshot, reachableByKind, route, toMicroUsd } from "./index.ts";
import type { ExclusionReason, PayeeTarget, PaymentIntent, RoutePolicy, Snapshot } from "./types.ts";

const eur: Asset = { code: "EUR", scale: 2, ledger: 9 }; // never has a USD rate here
const railKinds: RailKind[] = ["internal", "evm", "lightning", "fiat"];
const destinationKinds: DestinationKind[] = [
  "account",
  "evm_address",
  "evm_split",
  "bolt11",
  "lightning_node",
  "lightning_address",
  "stripe_account",
];
const destinationOf: Record<DestinationKind, Destination> = {
  account: { kind: "account", accountId: "a" },
  evm_address: { kind: "evm_address", address: "0x01" },
  evm_split: { kind: "evm_split", splitId: "0x02" },
  bolt11: { kind: "bolt11", invoice: "lnbc" },
  lightning_node: { kind: "lightning_node", pubkey: "02" },
  lightning_address: { kind: "lightning_address", address: "a@b.example" },
  stripe_account: { kind: "stripe_account", accountId: "acct" },
};
/** The chains rails settle on and addresses name here; a rail or an address may name none. */
const chainIds = [1, 10, 8453];
const chainIdArb = fc.constantFrom(undefined, undefined, ...chainIds);
/** A destination of this kind; an address names one of the chains, or none. */
const destinationArb = (kind: DestinationKind): fc.Arbitrary<Destination> =>
  kind === "evm_address"
    ? chainIdArb.map((chainId) =>
        chainId === undefined
          ? destinationOf.evm_address
          : { kind: "evm_address" as const, address: `0x0${chainId}` as const, chainId },
      )
    : fc.constant(destinationOf[kind]);
const seed = 20_261_121;

const rateArb: fc.Arbitrary<UsdRate> = fc.record({
  microUsd: fc.bigInt({ min: 1n, max: 1_000_000n }),
  perMinorUnits: fc.bigInt({ min: 1n, max: 1_000_000_000n }),
});

/** A rate within ±10 % of a realistic one, with an awkward denominator so that every rounding shows. */
const nearRate = (base: UsdRate): fc.Arbitrary<UsdRate> =>
  fc.tuple(fc.bigInt({ min: 1n, max: 997n }), fc.integer({ min: -100, max: 100 })).map(([m, permille]) => ({
    microUsd: (base.microUsd * m * BigInt(1_000 + permille)) / 1_000n || 1n,
    perMinorUnits: base.perMinorUnits * m,
  }));

const ratesArb = fc.record({
  USDC: nearRate({ microUsd: 1n, perMinorUnits: 1n }),
  USD: nearRate({ microUsd: 10_000n, perMinorUnits: 1n }),
  BTC: nearRate({ microUsd: 3n, perMinorUnits: 5n }),
  ETH: nearRate({ microUsd: 3n, perMinorUnits: 1_000_000_000n }),
});

/** Mostly true: a generator that excluded most rails would test little. */
const mostly = fc.integer({ min: 0, max: 9 }).map((x) => x > 0);
/** Log-uniform bigint in [1, 10^digitsMax). */
const logBig = (digitsMax: number) =>
  fc
    .tuple(
      fc.integer({ min: 0, max: digitsMax - 1 }),
      fc.bigInt({ min: 1n, max: 9n }),
      fc.bigInt({ min: 0n, max: 999n }),
    )
    .map(([digits, lead, tail]) => lead * 10n ** BigInt(digits) + (digits >= 3 ? tail : 0n));

const railArb = (id: string, kinds: readonly RailKind[]): fc.Arbitrary<RailSnapshot> =>
  fc
    .record({
      kind: fc.constantFrom(...kinds),
      asset: fc.constantFrom(usdc, usd, btc, usdc, usd, btc, eur),
      available: mostly,
      ownReach: mostly,
      reachesOther: fc.subarray(destinationKinds),
      amountMin: fc.oneof(fc.constant(0n), fc.constant(1n), logBig(6)),
      amountSpan: fc.oneof(fc.constant(2n ** 62n), logBig(15)),
      liquidity: fc.option(logBig(16)),
      feeFixed: fc.bigInt({ min: 0n, max: 10_000n }),
      feePpm: fc.bigInt({ min: 0n, max: 100_000n }),
      feeMin: fc.option(fc.bigInt({ min: 0n, max: 10_000n }), { nil: undefined }),
      networkFeeMicroUsd: fc.bigInt({ min: 0n, max: 100_000n }),
      networkFee: fc.option(
        fc.oneof(
          fc.record({
            kind: fc.constant("evm_gas" as const),
            gasUnits: fc.bigInt({ min: 21_000n, max: 500_000n }),
            gasPriceWei: logBig(11),
            nativeAsset: fc.constantFrom("ETH", "ETH", "ETH", "POL"),
          }),
          fc.record({
            kind: fc.constant("lightning_routing" as const),
            base: fc.bigInt({ min: 0n, max: 10_000n }),
            ppm: fc.bigInt({ min: 0n, max: 10_000n }),
          }),
        ),
        { nil: undefined },
      ),
      latencyMs: fc.integer({ min: 0, max: 200_000 }),
      successes: fc.integer({ min: 0, max: 100 }),
      failures: fc.integer({ min: 0, max: 100 }),
      circuit: fc.constantFrom(
        undefined,
        undefined,
        undefined,
        "closed" as const,
        "half_open" as const,
        "open" as const,
      ),
      fxSpreadPpm: fc.option(fc.bigInt({ min: 0n, max: 100_000n }), { nil: undefined }),
      chainId: chainIdArb,
    })
    .map(({ amountSpan, ownReach, reachesOther, chainId, ...r }) => ({
      ...r,
      ...(chainId === undefined ? {} : { chainId }),
      reaches: ownReach ? reachableByKind[r.kind] : reachesOther,
      rail: id,
      amountMax: r.amountMin + amountSpan,
      takenAtMs: 0,
    }));

/** Snapshots of `railsMin` to six rails whose kinds are drawn from `kinds`. */
const snapshotArbOf = (railsMin: number, kinds: fc.Arbitrary<RailKind[]>): fc.Arbitrary<Snapshot> =>
  fc
    .tuple(
      fc
        .tuple(fc.integer({ min: railsMin, max: 6 }), kinds)
        .chain(([n, kinds]) => fc.tuple(...Array.from({ length: n }, (_, i) => railArb(`r${i}`, kinds)))),
      ratesArb,
      fc.option(fc.bigInt({ min: 0n, max: 50_000n }), { nil: undefined }),
    )
    .map(([rails, usdRates, pairSpread]) => ({
      rails,
      usdRates,
      takenAtMs: 0,
      ...(pairSpread === undefined
        ? {}
        : { fxSpreadsPpm: { "USDC->BTC": pairSpread, "USD->USDC": pairSpread } }),
    }));

/** Rails of one or two kinds, often several of one kind (chains that compete). */
const snapshotArb = snapshotArbOf(1, fc.subarray(railKinds, { minLength: 1, maxLength: 2 }));

/**
 * A payment, mostly to a destination some rail of the snapshot reaches; three in ten to a payee with up to
 * four methods in any order, drawn from every kind the rails reach (addresses on each chain and on none).
 */
const intentArb = (snapshot: Snapshot): fc.Arbitrary<PaymentIntent> => {
  const reached = [...new Set(snapshot.rails.flatMap((r) => r.reaches))];
  const kindArb =
    reached.length > 0
      ? fc.oneof(
          { weight: 9, arbitrary: fc.constantFrom(...reached) },
          { weight: 1, arbitrary: fc.constantFrom(...destinationKinds) },
        )
      : fc.constantFrom(...destinationKinds);
  return fc.record({
    asset: fc.constantFrom(usdc, usd, btc, usdc, usd, btc, eur),
    amount: logBig(15),
    destination: fc.oneof(
      { weight: 7, arbitrary: kindArb.chain(destinationArb) },
      { weight: 3, arbitrary: payeeArb(reached.length > 0 ? reached : destinationKinds, 4) },
    ),
  });
};

/** A payee with up to `methodsMax` methods in any order, of these kinds: addresses on each chain and on none. */
const payeeArb = (kinds: readonly DestinationKind[], methodsMax: number): fc.Arbitrary<PayeeTarget> => {
  const methodPool = kinds.flatMap((kind) =>
    kind === "evm_address"
      ? [
          destinationOf.evm_address,
          ...chainIds.map((chainId) => ({
            kind: "evm_address" as const,
            address: `0x0${chainId}` as const,
            chainId,
          })),
        ]
      : [destinationOf[kind]],
  );
  return fc
    .shuffledSubarray(methodPool, { maxLength: Math.min(methodsMax, methodPool.length) })
    .map((methods) => ({ kind: "payee", payeeId: "pye_1", methods }));
};

const railIds = ["r0", "r1", "r2", "r3", "r4", "r5"];
/** Present one time in `oneIn`: most payments carry few constraints. */
const sometimes = <T>(arb: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
const policyArb: fc.Arbitrary<RoutePolicy> = fc
  .record({
    maxFeeMicroUsd: sometimes(logBig(9), 3),
    maxFeeBps: sometimes(fc.integer({ min: 0, max: 10_000 }), 3),
    maxLatencyMs: sometimes(fc.integer({ min: 0, max: 1_000_000 }), 4),
    allowedRails: sometimes(fc.subarray(railIds), 6),
    deniedRails: sometimes(fc.subarray(railIds, { maxLength: 2 }), 6),
    failureCostMicroUsd: sometimes(fc.bigInt({ min: 0n, max: 100_000n }), 2),
    latencyCostMicroUsdPerS: sometimes(fc.bigInt({ min: 0n, max: 1_000n }), 2),
    feeHeadroomBps: sometimes(fc.integer({ min: 0, max: 20_000 }), 2),
  })
  .map(
    (policy) => Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) as RoutePolicy,
  );

const caseArb = snapshotArb.chain((snapshot) =>
  fc.tuple(fc.constant(snapshot), intentArb(snapshot), policyArb),
);

/** A payee with methods of every kind against rails of every kind: the methods compete across rails and chains. */
const payeeCaseArb = snapshotArbOf(4, fc.constant(railKinds)).chain((snapshot) =>
  fc.tuple(
    fc.constant(snapshot),
    fc.record({
      asset: fc.constantFrom(usdc, usd, btc),
      amount: logBig(12),
      destination: payeeArb(destinationKinds, 7),
    }),
    policyArb,
  ),
);

type Reference =
  | { ok: false; reason: ExclusionReason }
  | {
      ok: true;
      destination: Destination;
      amount: bigint;
      fee: bigint;
      total: bigint;
      network: bigint;
      provider: bigint;
      fx: bigint;
    };

/** Whether a rail reaches one destination: its snapshot and its kind allow the kind, and an address's chain is the rail's. */
function reaches(rail: RailSnapshot, destination: Destination): boolean {
  if (!rail.reaches.includes(destination.kind) || !reachableByKind[rail.kind].includes(destination.kind)) {
    return false;
  }
  if (destination.kind === "evm_address" && destination.chainId !== undefined) {
    return rail.chainId === destination.chainId;
  }
  return true;
}

/** The model stated plainly, one rail at a time, in the documented precedence. */
function reference(
  rail: RailSnapshot,
  intent: PaymentIntent,
  snapshot: Snapshot,
  policy: RoutePolicy,
): Reference {
  const rates = snapshot.usdRates;
  if (
    policy.deniedRails?.includes(rail.rail) ||
    (policy.allowedRails && !policy.allowedRails.includes(rail.rail))
  ) {
    return { ok: false, reason: "not_allowed" };
  }
  if (!rail.available) return { ok: false, reason: "rail_unavailable" };
  if (rail.circuit === "open") return { ok: false, reason: "circuit_open" };
  const rr = rates[rail.asset.code];
  const gas = rail.networkFee?.kind === "evm_gas" ? rail.networkFee : null;
  const native = gas ? rates[gas.nativeAsset] : undefined;
  if (gas && !native) return { ok: false, reason: "no_fx_rate" };
  if (!rr) return { ok: false, reason: "no_fx_rate" };
  const target = intent.destination;
  const methods = target.kind === "payee" ? target.methods : [target];
  const destination = methods.find((method) => reaches(rail, method));
  if (destination === undefined) return { ok: false, reason: "unreachable_destination" };
  const pr = rates[intent.asset.code];
  if (!pr) return { ok: false, reason: "no_fx_rate" };
  const same = intent.asset.code === rail.asset.code;
  const amount = same
    ? intent.amount
    : divFloor(intent.amount * pr.microUsd * rr.perMinorUnits, pr.perMinorUnits * rr.microUsd);
  if (amount < rail.amountMin) return { ok: false, reason: "below_minimum" };
  if (amount > rail.amountMax) return { ok: false, reason: "above_maximum" };
  if (rail.liquidity !== null && amount > rail.liquidity)
    return { ok: false, reason: "insufficient_liquidity" };
  if (policy.maxLatencyMs !== undefined && rail.latencyMs > policy.maxLatencyMs) {
    return { ok: false, reason: "latency_above_max" };
  }
  const inUsd = (x: bigint) => divCeil(x * rr.microUsd, rr.perMinorUnits);
  let network = rail.networkFeeMicroUsd;
  if (gas && native)
    network = divCeil(gas.gasUnits * gas.gasPriceWei * native.microUsd, native.perMinorUnits);
  if (rail.networkFee?.kind === "lightning_routing") {
    network = inUsd(rail.networkFee.base + divCeil(amount * rail.networkFee.ppm, 1_000_000n));
  }
  let providerRail = rail.feeFixed + divCeil(amount * rail.feePpm, 1_000_000n);
  if (providerRail < (rail.feeMin ?? 0n)) providerRail = rail.feeMin ?? 0n;
  const provider = inUsd(providerRail);
  const spread =
    snapshot.fxSpreadsPpm?.[`${intent.asset.code}->${rail.asset.code}`] ?? rail.fxSpreadPpm ?? 0n;
  const fx = same ? 0n : divCeil(intent.amount * pr.microUsd * spread, pr.perMinorUnits * 1_000_000n);
  const fee = network + provider + fx;
  if (policy.maxFeeMicroUsd !== undefined && fee > policy.maxFeeMicroUsd)
    return { ok: false, reason: "fee_above_max" };
  if (
    policy.maxFeeBps !== undefined &&
    fee * 10_000n * pr.perMinorUnits > BigInt(policy.maxFeeBps) * intent.amount * pr.microUsd
  ) {
    return { ok: false, reason: "fee_above_max" };
  }
  const f = BigInt(rail.failures ?? 0);
  const failure = divCeil(
    f * (network + (policy.failureCostMicroUsd ?? 10_000n)),
    BigInt(rail.successes ?? 0) + f + 1n,
  );
  const latency = divCeil(BigInt(rail.latencyMs) * (policy.latencyCostMicroUsdPerS ?? 0n), 1_000n);
  return { ok: true, destination, amount, fee, total: fee + failure + latency, network, provider, fx };
}

const runs = { seed, numRuns: 2_000 };
/** Property suites run thousands of cases; a busy machine must not fail them on time alone. */
const propertyTimeoutMs = 120_000;

/** Every rail is a candidate or excluded, once, with the reference's verdict, reason, method and cost. */
function expectReferenceVerdicts([snapshot, intent, policy]: [Snapshot, PaymentIntent, RoutePolicy]): void {
  const decision = route(intent, prepareSnapshot(snapshot), policy);
  const seen = [...decision.candidates.map((c) => c.rail), ...decision.excluded.map((e) => e.rail)].sort();
  expect(seen).toEqual(snapshot.rails.map((r) => r.rail).sort());
  for (const rail of snapshot.rails) {
    const ref = reference(rail, intent, snapshot, policy);
    const candidate = decision.candidates.find((c) => c.rail === rail.rail);
    if (ref.ok) {
      expect(candidate?.destination).toBe(ref.destination);
      expect(candidate?.amount).toBe(ref.amount);
      expect(candidate?.cost.feeMicroUsd).toBe(ref.fee);
      expect(candidate?.cost.totalMicroUsd).toBe(ref.total);
    } else {
      expect(candidate).toBeUndefined();
      expect(decision.excluded.find((e) => e.rail === rail.rail)?.reason).toBe(ref.reason);
    }
  }
}

describe("route: properties", { timeout: propertyTimeoutMs }, () => {
  it("every rail is either a candidate or excluded, once, with the reference's verdict and reason", () => {
    fc.assert(fc.property(caseArb, expectReferenceVerdicts), runs);
  });

  it("a payee on rails of every kind: each rail pays the first method it reaches, as the reference says", () => {
    fc.assert(fc.property(payeeCaseArb, expectReferenceVerdicts), runs);
  });

  it("a payee is routed as its rails would route the method each reaches, alone", () => {
    fc.assert(
      fc.property(payeeCaseArb, ([snapshot, intent, policy]) => {
        const prepared = prepareSnapshot(snapshot);
        const decision = route(intent, prepared, policy);
        for (const candidate of decision.candidates) {
          const alone = route({ ...intent, destination: candidate.destination }, prepared, policy);
          expect(alone.candidates.find((c) => c.rail === candidate.rail)).toEqual(candidate);
        }
      }),
      runs,
    );
  });

  it("never offers an infeasible rail, and the chosen one is the cheapest feasible one", () => {
    fc.assert(
      fc.property(caseArb, ([snapshot, intent, policy]) => {
        const decision = route(intent, prepareSnapshot(snapshot), policy);
        const feasible = snapshot.rails
          .map((rail) => reference(rail, intent, snapshot, policy))
          .filter((ref) => ref.ok);
        if (feasible.length === 0) {
          expect(decision.chosen).toBeNull();
          return;
        }
        let cheapest = feasible[0]!.total;
        for (const ref of feasible) if (ref.total < cheapest) cheapest = ref.total;
        expect(decision.chosen?.cost.totalMicroUsd).toBe(cheapest);
        for (let i = 1; i < decision.candidates.length; i++) {
          expect(
            decision.candidates[i - 1]!.cost.totalMicroUsd <= decision.candidates[i]!.cost.totalMicroUsd,
          ).toBe(true);
        }
      }),
      runs,
    );
  });

  it("respects fee caps: fee ≤ fee cap ≤ the policy's caps, and the rail's fee max is worth no more than the cap", () => {
    fc.assert(
      fc.property(caseArb, ([snapshot, intent, policy]) => {
        const decision = route(intent, prepareSnapshot(snapshot), policy);
        const pr = snapshot.usdRates[intent.asset.code];
        for (const c of decision.candidates) {
          expect(c.cost.feeMicroUsd <= c.feeCapMicroUsd).toBe(true);
          if (policy.maxFeeMicroUsd !== undefined)
            expect(c.feeCapMicroUsd <= policy.maxFeeMicroUsd).toBe(true);
          if (policy.maxFeeBps !== undefined && pr) {
            expect(
              c.feeCapMicroUsd * 10_000n * pr.perMinorUnits <=
                BigInt(policy.maxFeeBps) * intent.amount * pr.microUsd,
            ).toBe(true);
          }
          const rr = snapshot.usdRates[c.asset.code]!;
          expect(c.feeMax >= 0n).toBe(true);
          expect(c.feeMax * rr.microUsd <= (c.feeCapMicroUsd - c.cost.fxMicroUsd) * rr.perMinorUnits).toBe(
            true,
          );
        }
      }),
      runs,
    );
  });

  it("never creates money converting the payment into the rail's asset, and loses less than one minor unit", () => {
    fc.assert(
      fc.property(caseArb, ([snapshot, intent, policy]) => {
        const decision = route(intent, prepareSnapshot(snapshot), policy);
        const pr = snapshot.usdRates[intent.asset.code];
        for (const c of decision.candidates) {
          const rr = snapshot.usdRates[c.asset.code]!;
          const paid = intent.amount * pr!.microUsd * rr.perMinorUnits;
          expect(c.amount * rr.microUsd * pr!.perMinorUnits <= paid).toBe(true);
          expect((c.amount + 1n) * rr.microUsd * pr!.perMinorUnits > paid).toBe(true);
        }
      }),
      runs,
    );
  });

  it("gives the same decision for a plain snapshot as for a prepared one", () => {
    fc.assert(
      fc.property(caseArb, ([snapshot, intent, policy]) => {
        expect(route(intent, snapshot, policy)).toEqual(route(intent, prepareSnapshot(snapshot), policy));
      }),
      { seed, numRuns: 300 },
    );
  });
});

describe("conversions: properties", { timeout: propertyTimeoutMs }, () => {
  const amount = fc.bigInt({ min: 0n, max: 10n ** 18n });
  it("floor ≤ half-even ≤ ceil, within one unit, and floor round trips never create money", () => {
    fc.assert(
      fc.property(amount, rateArb, (x, rate) => {
        const down = toMicroUsd(x, rate, "floor");
        const even = toMicroUsd(x, rate, "half_even");
        const up = toMicroUsd(x, rate, "ceil");
        expect(down <= even && even <= up && up - down <= 1n).toBe(true);
        expect(fromMicroUsd(down, rate, "floor") <= x).toBe(true);
        const there = convert(x, { num: rate.microUsd, den: rate.perMinorUnits }, "floor");
        expect(convert(there, { num: rate.perMinorUnits, den: rate.microUsd }, "floor") <= x).toBe(true);
      }),
      { seed, numRuns: 2_000 },
    );
  });
});

describe("the generators", { timeout: propertyTimeoutMs }, () => {
  it("produce enough routable payments, with several candidates, for the properties to mean something", () => {
    const samples = fc.sample(caseArb, { seed, numRuns: 2_000 });
    const counts = { routed: 0, several: 0, reasons: new Set<string>() };
    for (const [snapshot, intent, policy] of samples) {
      const decision = route(intent, snapshot, policy);
      if (decision.candidates.length > 0) counts.routed++;
      if (decision.candidates.length > 1) counts.several++;
      for (const e of decision.excluded) {
        counts.reasons.add(e.reason);
      }
    }
    expect(counts.routed).toBeGreaterThan(200);
    expect(counts.several).toBeGreaterThan(40);
    expect(counts.reasons.size).toBe(10);
  });

  it("produce payees paid over several rails and methods, and addresses on the wrong chain", () => {
    const samples = fc.sample(payeeCaseArb, { seed, numRuns: 2_000 });
    const counts = { severalRails: 0, severalMethods: 0, laterMethod: 0, chainRefused: 0 };
    for (const [snapshot, intent, policy] of samples) {
      const decision = route(intent, snapshot, policy);
      const target = intent.destination as PayeeTarget;
      if (decision.candidates.length > 1) counts.severalRails++;
      if (new Set(decision.candidates.map((c) => c.destination)).size > 1) counts.severalMethods++;
      if (decision.candidates.some((c) => c.destination !== target.methods[0])) counts.laterMethod++;
      for (const e of decision.excluded) {
        if (e.reason === "unreachable_destination" && e.detail.includes("chain")) counts.chainRefused++;
      }
    }
    expect(counts.severalRails).toBeGreaterThan(40);
    expect(counts.severalMethods).toBeGreaterThan(25);
    expect(counts.laterMethod).toBeGreaterThan(100);
    expect(counts.chainRefused).toBeGreaterThan(80);
  });
});
