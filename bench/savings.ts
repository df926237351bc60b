// `npm run bench -- savings`: what the router saves. A fixed, seeded stream of 10,000 USDC payments, amounts
// log-uniform from $0.001 to $1,000, to one payee reachable on four rails — an L1 and an L2 chain (an address on
// each), Lightning (keysend to its node) and Stripe (its connected account) — each priced by route() itself:
// the case `router` with every rail, the cases `always-<rail>` with that rail alone (`allowedRails`), so the
// costs are the router's own model, the same arithmetic either way.
//
// Rail models (the fixtures' rails, with realistic limits):
// - evm-l1: 65 000 gas at 30 gwei, ETH at $3,000 — $5.85 a transfer; hot wallet $100,000.
// - evm-l2: 65 000 gas at 0.01 gwei — $0.00195 a transfer; hot wallet $50,000.
// - lightning: 1 sat + 500 ppm routing, 0.5 % USDC→BTC spread; outbound channel liquidity 0.005 BTC ($300),
//   so a larger payment cannot go this way.
// - fiat (Stripe): 30 ¢ + 2.9 %, 1 % USDC→USD spread; at least 50 ¢ of payment.
//
// Metrics: `fees_usd`, the sum of the paid payments' fees (network + provider + FX, the cost the caps bound),
// summed as bigint micro-USD and shown in dollars; `unpayable`, the payments that case could not pay;
// `paid`; for a single rail, `router_same_payments_fees_usd`: what the router paid in fees for exactly the
// payments that rail paid, the like-for-like comparison.
//
// It asserts, and exits non-zero otherwise: the router pays every payment some rail can pay (and none other),
// no payment costs it more than the cheapest rail that can pay it, it pays no more in fees than any single rail
// on that rail's payments, and no more in total than the best single rail that pays as many payments.

import { type Destination, SwitchyardError } from "../core/index.ts";
import {
  evmL1Rail,
  evmL2Rail,
  fiatRail,
  lightningRail,
  staticSnapshot,
  usdc,
} from "../gateway/router/fixtures.ts";
import { type PayeeTarget, type PaymentIntent, prepareSnapshot, route } from "../gateway/router/index.ts";
import { type BenchResult, type BenchRow, makeRandom } from "./report.ts";

const paymentsCount = 10_000;
const seed = 0x5a71_4e55;
/** Amounts are mantissa × 10^decade micro-USDC: mantissa in [1 000, 10 000), decades 0 to 5 ($0.001 to $1,000). */
const mantissaMin = 1_000;
const mantissaSpan = 9_000;
const decadesCount = 6;
/** A mantissa is kept with odds mantissaMin / mantissa (at least 1 in 10); this many draws bound each loop. */
const drawsMax = 1_000;
const microUsdPerUsd = 1_000_000n;

/** The bench's own assertion failed: the router did worse than a rail alone. A bug, not a measurement. */
export class SavingsAssertionError extends SwitchyardError {
  override readonly name = "SavingsAssertionError";
}

const rails = [
  { ...evmL1Rail, liquidity: 100_000n * microUsdPerUsd },
  { ...evmL2Rail, liquidity: 50_000n * microUsdPerUsd },
  // 0.005 BTC = 500 000 sat = 500 000 000 msat of outbound channel liquidity.
  { ...lightningRail, liquidity: 500_000_000n },
  fiatRail,
];
const singleRails = [
  { name: "always-l1", rail: "evm-l1" },
  { name: "always-l2", rail: "evm-l2" },
  { name: "always-lightning", rail: "lightning" },
  { name: "always-stripe", rail: "fiat" },
];

const methods: readonly Destination[] = [
  { kind: "evm_address", address: "0x00000000000000000000000000000000000000b1", chainId: 1 },
  { kind: "evm_address", address: "0x00000000000000000000000000000000000000b2", chainId: 10 },
  { kind: "lightning_node", pubkey: "02ab" },
  { kind: "stripe_account", accountId: "acct_payee" },
];
const payee: PayeeTarget = { kind: "payee", payeeId: "pye_savings", methods };

/** A uniform integer in [0, n) for 0 < n ≤ 2^31, without modulo bias (a draw in the ragged top is drawn again). */
function uniformBelow(next: () => number, n: number): number {
  const limit = 2 ** 32 - (2 ** 32 % n);
  for (let draw = 0; draw < drawsMax; draw++) {
    const x = next();
    if (x < limit) return x % n;
  }
  throw new SavingsAssertionError(`no draw below ${limit} in ${drawsMax} draws`);
}

/**
 * Log-uniform amounts in integers: a decade drawn uniformly, and a mantissa m in [1 000, 10 000) drawn uniformly
 * and kept with odds 1 000 / m (rejection sampling), so its density is proportional to 1 / m.
 */
export function makeAmounts(count: number): bigint[] {
  const next = makeRandom(seed);
  const amounts: bigint[] = [];
  for (let i = 0; i < count; i++) {
    const decade = uniformBelow(next, decadesCount);
    let mantissa = -1;
    for (let draw = 0; draw < drawsMax && mantissa < 0; draw++) {
      const m = mantissaMin + uniformBelow(next, mantissaSpan);
      if (uniformBelow(next, m) < mantissaMin) mantissa = m;
    }
    if (mantissa < 0) throw new SavingsAssertionError(`no mantissa accepted in ${drawsMax} draws`);
    amounts.push(BigInt(mantissa) * 10n ** BigInt(decade));
  }
  return amounts;
}

/** Micro-USD as dollars, exactly: the decimal string of the bigint, read once as a number for the report. */
function usdOf(microUsd: bigint): number {
  const fraction = (microUsd % microUsdPerUsd).toString().padStart(6, "0");
  return Number(`${microUsd / microUsdPerUsd}.${fraction}`);
}

/** Per payment, the fee paid in micro-USD, or null when the case could not pay it. */
type Fees = (bigint | null)[];

function sum(fees: Fees, only?: Fees): bigint {
  let total = 0n;
  for (let i = 0; i < fees.length; i++) if (only === undefined || only[i] !== null) total += fees[i] ?? 0n;
  return total;
}

function unpaid(fees: Fees): number {
  return fees.filter((fee) => fee === null).length;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new SavingsAssertionError(message);
}

/** The claims the header makes, on this stream. */
function assertRouterAtLeastAsGood(router: Fees, single: Map<string, Fees>): void {
  for (let i = 0; i < router.length; i++) {
    const fee = router[i] ?? null;
    const payable = [...single.values()]
      .map((fees) => fees[i])
      .filter((x): x is bigint => x !== null && x !== undefined);
    check(
      (fee !== null) === payable.length > 0,
      `payment ${i}: the router paid ${fee !== null}, ${payable.length} rails can`,
    );
    for (const other of payable)
      check(fee !== null && fee <= other, `payment ${i}: the router's fee ${fee} is above ${other}`);
  }
  let bestTotal: bigint | null = null;
  for (const [name, fees] of single) {
    const same = sum(router, fees);
    check(
      same <= sum(fees),
      `${name}: the router paid ${same} micro-USD on its payments, it paid ${sum(fees)}`,
    );
    if (unpaid(fees) === unpaid(router) && (bestTotal === null || sum(fees) < bestTotal))
      bestTotal = sum(fees);
  }
  check(
    bestTotal === null || sum(router) <= bestTotal,
    `the router paid ${sum(router)} micro-USD, a single rail ${bestTotal}`,
  );
}

export async function run(): Promise<BenchResult> {
  const snapshot = prepareSnapshot(staticSnapshot(rails));
  const intents: PaymentIntent[] = makeAmounts(paymentsCount).map((amount) => ({
    asset: usdc,
    amount,
    destination: payee,
  }));
  const router: Fees = intents.map((intent) => route(intent, snapshot, {}).chosen?.cost.feeMicroUsd ?? null);
  const single = new Map<string, Fees>();
  for (const { name, rail } of singleRails) {
    const policy = { allowedRails: [rail] };
    single.set(
      name,
      intents.map((intent) => route(intent, snapshot, policy).chosen?.cost.feeMicroUsd ?? null),
    );
  }
  assertRouterAtLeastAsGood(router, single);

  const rows: BenchRow[] = [
    {
      case: "router",
      fees_usd: usdOf(sum(router)),
      unpayable: unpaid(router),
      paid: paymentsCount - unpaid(router),
    },
  ];
  for (const [name, fees] of single) {
    rows.push({
      case: name,
      fees_usd: usdOf(sum(fees)),
      unpayable: unpaid(fees),
      paid: paymentsCount - unpaid(fees),
      router_same_payments_fees_usd: usdOf(sum(router, fees)),
    });
  }
  return { benchmark: "savings", rows };
}
