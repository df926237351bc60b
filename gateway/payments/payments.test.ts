// The payments service on PGlite with the real ledger and router, and toy rails that can fail or "die"
// (throw) on either side of paying: two rails must never both pay one payment, whatever the crash point.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AttemptOutcome, OutgoingAttempt, Rail, RailSnapshot } from "../../core/index.ts";
import { assets, SwitchyardError } from "../../core/index.ts";
import { recordStatements } from "../../test/support/recording-db.ts";
import { toyRailSnapshot } from "../../test/support/toy-rail.ts";
import { balanceOf, createAccount, createAccountCache, getClearingAccount } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  createLedger,
  type Ledger,
  ledgerMigrations,
  TransferFlags,
  transferCodes,
} from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import {
  buildSnapshot,
  learningConfigDefault,
  quoteTtlMsMax,
  type RoutePolicy,
  route,
  staticRateSource,
} from "../router/index.ts";
import { createTenant } from "../tenants/index.ts";
import {
  applyRailEvent,
  createInternalSettler,
  createMarket,
  createPayment,
  createPaymentQuote,
  getPayment,
  outcomeRefreshMs,
  PaymentInvariantError,
  type PaymentsDeps,
  RecoveryError,
  recoverOpenAttempts,
} from "./index.ts";
import { finishAttempt, listOpenAttempts, listStrandedPayments } from "./store.ts";

class Crash extends Error {
  override name = "Crash";
}

type ToyRail = Rail & {
  paid: Map<string, bigint>; // attempt id → amount: what actually left on this rail
  calls: number;
  /** The fee a payout reports it cost beside its amount (a route's fee), in the rail's asset. */
  fee: bigint;
  behaviour:
    | "pay"
    | "fail_retryable"
    | "fail_final"
    | "fail_liquidity"
    | "fail_unavailable"
    | "fail_busy"
    | "crash_before_paying"
    | "crash_after_paying";
};

function toyRail(id: string, feeFixed: bigint): ToyRail {
  const outcomes = new Map<string, AttemptOutcome>();
  const rail: ToyRail = {
    id,
    kind: "evm",
    asset: assets.USDC,
    paid: new Map(),
    calls: 0,
    fee: 0n,
    behaviour: "pay",
    async start() {},
    async stop() {},
    snapshot: () => toyRailSnapshot(id, feeFixed),
    async execute(attempt: OutgoingAttempt) {
      rail.calls += 1;
      const known = outcomes.get(attempt.id);
      if (known !== undefined) return known; // the first outcome of an attempt, never a second payment
      if (rail.behaviour === "crash_before_paying") throw new Crash(`${id} died before paying`);
      if (rail.behaviour === "fail_liquidity") {
        // As LND or a node may say it: with the shared balance in the text.
        const failed: AttemptOutcome = {
          status: "failed",
          code: "insufficient_liquidity",
          message: `${id}: insufficient local balance, 4321987 available`,
          retryElsewhere: false,
        };
        outcomes.set(attempt.id, failed);
        return failed;
      }
      if (rail.behaviour === "fail_unavailable" || rail.behaviour === "fail_busy") {
        const failed: AttemptOutcome = {
          status: "failed",
          code: "rail_unavailable",
          message: `${id} cannot be reached`,
          retryElsewhere: true,
          ...(rail.behaviour === "fail_busy"
            ? { busy: true as const, message: `${id}: this tenant's share is full` }
            : {}),
        };
        outcomes.set(attempt.id, failed);
        return failed;
      }
      if (rail.behaviour === "fail_retryable" || rail.behaviour === "fail_final") {
        const failed: AttemptOutcome = {
          status: "failed",
          code: "rejected",
          message: `${id} refused`,
          retryElsewhere: rail.behaviour === "fail_retryable",
        };
        outcomes.set(attempt.id, failed);
        return failed;
      }
      rail.paid.set(attempt.id, attempt.amount);
      const done: AttemptOutcome = {
        status: "succeeded",
        evidence: { rail: "fiat", pspId: `${id}-${attempt.id}` },
        fee: rail.fee,
      };
      outcomes.set(attempt.id, done);
      if (rail.behaviour === "crash_after_paying") throw new Crash(`${id} died after paying`);
      return done;
    },
    onEvent() {},
    async balance() {
      return 0n;
    },
  };
  return rail;
}

/** A database that "dies" on the nth statement matching a pattern, to stop a process between two steps. */
function dyingDb(db: Db, pattern: RegExp, nth: number): Db {
  let seen = 0;
  const check = (text: string) => {
    if (pattern.test(text)) {
      seen += 1;
      if (seen === nth) throw new Crash(`died before: ${text.slice(0, 40)}`);
    }
  };
  return {
    ...db,
    query: async (text, params) => {
      check(text);
      return db.query(text, params);
    },
    queryAll: async (list) => {
      for (const statement of list) check(statement.text);
      return db.queryAll(list);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: async (text, params) => {
            check(text);
            return tx.query(text, params);
          },
        }),
      ),
  };
}

let db: Db;
let ledger: Ledger;
let cheap: ToyRail;
let dear: ToyRail;
const tenantId = "ten_test";
const payee = "0x00000000000000000000000000000000000000aa" as const;

function depsWith(database: Db): PaymentsDeps {
  const rails = new Map<string, Rail>([
    [cheap.id, cheap],
    [dear.id, dear],
  ]);
  return {
    db: database,
    ledger,
    accounts: createAccountCache({ sql: database }, { entriesMax: 100 }),
    rails,
    internal: createInternalSettler({ ledger, sql: database, nowMs: Date.now }),
    snapshot: () =>
      buildSnapshot({
        rails: [...rails.values()].map((r) => r.snapshot()),
        rateSource: staticRateSource({ usdRates: { USDC: { microUsd: 1n, perMinorUnits: 1n } } }),
        assetCodes: ["USDC"],
        takenAtMs: 0,
      }),
    route,
    recoveryBatchMax: 100,
    strandedQuietMs: 0,
    nowMs: Date.now,
  };
}

async function customerBalance() {
  const [account] = await ledger.lookupAccounts([customerLedgerId]);
  return balanceOf("customer", account!);
}

let customerLedgerId: bigint;
let customerId: string;

let customerCount = 0;

// One in-memory database for the file (PGlite takes a while to open); each test gets its own customer.
beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
  await createTenant(db, { id: tenantId, name: "Test" });
  for (const id of ["cheap", "dear"]) {
    await createAccount(
      { sql: db, ledger },
      { tenantId: null, kind: "clearing", asset: assets.USDC, name: id, rail: id, id: `acct_clearing_${id}` },
    );
  }
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

beforeEach(async () => {
  // Recovery drives every open attempt and stranded payment in the database, as in production; some tests leave
  // theirs open on purpose, and the next test's rails (fresh toys under the same ids) would be asked to drive them.
  // Each test starts with none open, so that what its recovery does is its own, in whatever order tests run.
  await db.query("UPDATE attempts SET status = 'failed' WHERE status IN ('reserving', 'in_flight')");
  await db.query("UPDATE payments SET status = 'failed' WHERE status = 'processing'");
  customerCount += 1;
  customerId = `acct_customer_${customerCount}`;
  const customer = await createAccount(
    { sql: db, ledger },
    { tenantId, kind: "customer", asset: assets.USDC, name: "c", id: customerId },
  );
  customerLedgerId = customer.ledgerAccountId;
  cheap = toyRail("cheap", 1n);
  dear = toyRail("dear", 5n);
  // 500 arrives on each rail for the customer: each clearing account then holds what its rail can pay out.
  const clearings = await db.query<{ ledger_account_id: string }>(
    "SELECT ledger_account_id::text FROM accounts WHERE kind = 'clearing' ORDER BY id",
  );
  const results = await ledger.createTransfers(
    clearings.map((clearing, i) => ({
      id: 1_000n * BigInt(customerCount) + BigInt(i),
      debitAccountId: BigInt(clearing.ledger_account_id),
      creditAccountId: customer.ledgerAccountId,
      amount: 500n,
      ledger: 1,
      code: transferCodes.payments.funding,
    })),
  );
  expect(results.map((r) => r.status)).toEqual(["created", "created"]);
});

// What a test leaves open by mistake would otherwise go unseen: the beforeEach above closes it for the next test.
let leavesWorkOpen = false;
afterEach(async () => {
  const open = await db.query<{ id: string; status: string }>(
    "SELECT id, status FROM payments WHERE source_account_id = $1 AND status = 'processing'",
    [customerId],
  );
  if (!leavesWorkOpen) expect(open, "a payment this test left processing").toEqual([]);
  leavesWorkOpen = false;
});

const request = (key: string) => ({
  tenantId,
  asset: "USDC",
  amount: "0.000100", // 100 minor units
  sourceAccountId: customerId,
  destination: { kind: "evm_address" as const, address: payee },
  policy: {},
  metadata: {},
  idempotencyKey: key,
  quoteId: null,
});

type Created = Awaited<ReturnType<typeof createPayment>>;
const paymentIdOf = (result: Created) => (result.ok ? result.payment.id : "");

/** The events written for a payment: type and data.object, as the events view shows them (and deliveries carry). */
async function eventsOf(result: Created): Promise<{ type: string; payload: unknown }[]> {
  return await db.query<{ type: string; payload: unknown }>(
    "SELECT type, payload FROM events WHERE payload->>'payment_id' = $1 ORDER BY seq",
    [paymentIdOf(result)],
  );
}

/** The event of a request(…) payment's end: its facts, and the rail that carried it or the code it failed with. */
function endEvent(
  result: Created,
  status: "succeeded" | "failed",
  how: { rail: string } | { failure_code: string },
) {
  return {
    type: `payment.${status}`,
    payload: {
      payment_id: paymentIdOf(result),
      status,
      asset: "USDC",
      amount: "100",
      source_account: customerId,
      ...how,
    },
  };
}

function paidEverywhere(): bigint {
  return [...cheap.paid.values(), ...dear.paid.values()].reduce((a, b) => a + b, 0n);
}

/** A market over `rails` on `clock` (moved by the test), and payments deps that route on it and learn from them. */
function learningMarket(rails: readonly Rail[], clock: { nowMs: number }) {
  const market = createMarket({
    rails: new Map(rails.map((rail) => [rail.id, rail])),
    rateSource: staticRateSource({ usdRates: { USDC: { microUsd: 1n, perMinorUnits: 1n } } }),
    assetCodes: ["USDC"],
    refreshMs: 60_000,
    nowMs: () => clock.nowMs,
  });
  return {
    market,
    deps: { ...depsWith(db), snapshot: market.snapshot, learning: market },
    /** The circuit of `rail` as the market's snapshot has it now. */
    circuitOf: (rail: string) => market.snapshot().rails.find((r) => r.rail === rail)?.circuit,
  };
}

describe("payments across two rails", () => {
  it("voids a same-asset fee hold whole when the rate moved between routing and reserving", async () => {
    // Routed at one USDC rate, reserved at twice it: the fee hold is the attempt's fee limit all the same (capped at
    // the cap converted at the new rate, it was smaller than the limit the void and the post take it to be).
    const deps = depsWith(db);
    let asked = 0;
    const moved = (): ReturnType<PaymentsDeps["snapshot"]> =>
      buildSnapshot({
        rails: [cheap.snapshot(), dear.snapshot()],
        rateSource: staticRateSource({ usdRates: { USDC: { microUsd: 2n, perMinorUnits: 1n } } }),
        assetCodes: ["USDC"],
        takenAtMs: 0,
      });
    const first = deps.snapshot();
    const later = moved();
    deps.snapshot = () => (asked++ === 0 ? first : later);
    cheap.behaviour = "fail_final";
    const before = await customerBalance();
    const result = await createPayment(deps, request("k-rate-moved"));
    expect(result.ok && result.payment.status).toBe("failed");
    // Nothing held or taken: before, the void was refused (exceeds_pending_transfer_amount) and createPayment threw.
    expect(await customerBalance()).toEqual(before);
  });

  it("routes to the cheaper rail and debits the customer exactly once", async () => {
    const result = await createPayment(depsWith(db), request("k1"));
    expect(result.ok && result.payment.status).toBe("succeeded");
    expect(result.ok && result.payment.rail).toBe("cheap");
    expect(paidEverywhere()).toBe(100n);
    expect((await customerBalance()).posted).toBe(900n);
    // Its event tells what happened: a receiver needs no read of the payment to know the amount and the rail.
    expect(await eventsOf(result)).toEqual([endEvent(result, "succeeded", { rail: "cheap" })]);
  });

  it("falls back to the next rail when the first fails in a way another may fix, voiding the first reservation", async () => {
    cheap.behaviour = "fail_retryable";
    const result = await createPayment(depsWith(db), request("k2"));
    expect(result.ok && result.payment.status).toBe("succeeded");
    expect(result.ok && result.payment.rail).toBe("dear");
    expect(result.ok && result.payment.attempts.map((a) => [a.rail, a.status])).toEqual([
      ["cheap", "failed"],
      ["dear", "succeeded"],
    ]);
    expect(dear.paid.size).toBe(1);
    expect(cheap.paid.size).toBe(0);
    const balance = await customerBalance();
    expect(balance).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a rail failing as unavailable is priced as failing, then left out once its circuit opens; failures of the payment's own are not counted", async () => {
    const clock = { nowMs: Date.now() };
    const { market, deps, circuitOf } = learningMarket([cheap, dear], clock);
    const small = (key: string) => ({ ...request(key), amount: "0.000010" });
    const attemptsOf = (result: Awaited<ReturnType<typeof createPayment>>) =>
      result.ok ? result.payment.attempts.map((a) => [a.rail, a.status]) : result;
    // Refused for the payment's sake (as an expired invoice is), more often than the circuit allows: still asked first.
    cheap.behaviour = "fail_retryable";
    for (let i = 0; i < learningConfigDefault.consecutiveFailuresMax + 1; i++)
      expect(attemptsOf(await createPayment(deps, small(`k-learning-rejected-${i}`)))).toEqual([
        ["cheap", "failed"],
        ["dear", "succeeded"],
      ]);
    // Refused for load (a tenant's share of the rail's queue full: busy), more often than the circuit allows: still
    // asked first, its circuit closed. Before: counted as the rail's ill health, so one tenant holding its share full
    // opened the rail's circuit for every tenant.
    cheap.behaviour = "fail_busy";
    for (let i = 0; i < learningConfigDefault.consecutiveFailuresMax + 1; i++)
      expect(attemptsOf(await createPayment(deps, small(`k-learning-busy-${i}`)))).toEqual([
        ["cheap", "failed"],
        ["dear", "succeeded"],
      ]);
    await new Promise((resolve) => setTimeout(resolve, outcomeRefreshMs + 50));
    expect(circuitOf("cheap")).toBe("closed");
    expect(attemptsOf(await createPayment(deps, small("k-learning-busy-after")))).toEqual([
      ["cheap", "failed"],
      ["dear", "succeeded"],
    ]);
    // Unavailable: the payment falls back, and the next one goes to the dear rail first, the cheap one now priced
    // with its failure. Before: no outcome ever reached the router's learning, and each payment tried it first.
    cheap.behaviour = "fail_unavailable";
    expect(attemptsOf(await createPayment(deps, small("k-learning-unavailable")))).toEqual([
      ["cheap", "failed"],
      ["dear", "succeeded"],
    ]);
    await new Promise((resolve) => setTimeout(resolve, outcomeRefreshMs + 50)); // the snapshot made again with it
    expect(attemptsOf(await createPayment(deps, small("k-learning-after")))).toEqual([["dear", "succeeded"]]);
    // Failures enough open its circuit; past the cool-down one payment probes it, and every other sees it open at
    // once (before: half-open, so every payment until the next refresh went to the rail being probed).
    expect(circuitOf("cheap")).toBe("closed");
    for (let i = 1; i < learningConfigDefault.consecutiveFailuresMax; i++)
      market.recordOutcome("cheap", false);
    expect(circuitOf("cheap")).toBe("open");
    clock.nowMs += learningConfigDefault.openMs + 1;
    market.refresh();
    expect(circuitOf("cheap")).toBe("half_open");
    market.noteAttempt("cheap");
    expect(circuitOf("cheap")).toBe("open");
    // Outcomes that open or close no circuit are taken in together, once: not a snapshot made again for each (before:
    // each external payment's outcome rebuilt it, and with it the internal payments' routing memo went).
    const held = market.snapshot();
    market.recordOutcome("dear", true);
    market.recordOutcome("dear", true);
    expect(market.snapshot()).toBe(held);
    await new Promise((resolve) => setTimeout(resolve, outcomeRefreshMs + 50));
    expect(market.snapshot()).not.toBe(held);
  });

  it("past the cool-down, one payment probes the rail: those routed to it meanwhile go on without asking it", async () => {
    // The cheap rail alone in this market: whatever it is priced at, each payment has it first.
    const clock = { nowMs: Date.now() };
    const { market, deps, circuitOf } = learningMarket([cheap], clock);
    for (let i = 0; i < learningConfigDefault.consecutiveFailuresMax; i++)
      market.recordOutcome("cheap", false);
    expect(circuitOf("cheap")).toBe("open");
    clock.nowMs += learningConfigDefault.openMs + 1;
    market.refresh();
    expect(circuitOf("cheap")).toBe("half_open");
    const asked = cheap.calls;
    // The rail writes each first attempt ahead (as Lightning's journal does), to be executed or taken back.
    const writtenAhead: string[] = [];
    const takenBack: string[] = [];
    cheap.prepare = async (attempt) => {
      writtenAhead.push(attempt.id);
    };
    cheap.withdraw = async (attemptId) => {
      takenBack.push(attemptId);
    };
    const small = (key: string) => ({ ...request(key), amount: "0.000010" });
    // Routed together while the snapshot says half-open: each has the cheap rail first.
    const results = await Promise.all([1, 2, 3].map((i) => createPayment(deps, small(`k-half-open-${i}`))));
    // Before: every one of them was sent on the rail believed down, not one probe.
    expect(cheap.calls - asked).toBe(1);
    const ends = results.map((result) => (result.ok ? result.payment.status : null)).sort();
    // The other two, with no other rail, fail without having been sent (nothing taken from the payer).
    expect(ends).toEqual(["failed", "failed", "succeeded"]);
    // What the rail wrote ahead for the two not sent is taken back (before: left until it lapsed, holding its place).
    expect(writtenAhead).toHaveLength(3);
    expect(takenBack).toHaveLength(2);
    const sent = results.flatMap((result) =>
      result.ok && result.payment.status === "succeeded" ? [result.payment.attempts[0]!.id] : [],
    );
    expect(takenBack).not.toContain(sent[0]);
    // The probe succeeded: closed.
    expect(circuitOf("cheap")).toBe("closed");
  });

  it("a payout's fee the rail's clearing account has no room for is funded by the operator's capital, not a 500", async () => {
    // Others' payouts took the clearing account's room but for this payout's amount: the rail pays the amount and a
    // fee of 3 (its own liquidity, which the ledger does not hold, covers it).
    const clearing = (await getClearingAccount(db, { rail: "cheap", asset: assets.USDC }))!;
    const capital = await createAccount(
      { sql: db, ledger },
      {
        tenantId: null,
        kind: "capital",
        asset: assets.USDC,
        name: "others",
        rail: "cheap",
        id: `acct_others_${customerCount}`,
      },
    );
    const [held] = await ledger.lookupAccounts([clearing.ledgerAccountId]);
    const room = held!.debitsPosted - held!.creditsPosted - held!.creditsPending;
    const [drained] = await ledger.createTransfers([
      {
        id: 7_000_000n + BigInt(customerCount),
        debitAccountId: capital.ledgerAccountId,
        creditAccountId: clearing.ledgerAccountId,
        amount: room - 100n,
        ledger: 1,
        code: transferCodes.payments.funding,
      },
    ]);
    expect(drained?.status).toBe("created");
    cheap.fee = 3n;
    const result = await createPayment(depsWith(db), { ...request("k-fee-no-room"), amount: "0.000100" });
    // Before: the post's fee leg was refused (exceeds_debits) and createPayment threw, the payment left processing.
    expect(result.ok && [result.payment.status, result.payment.rail]).toEqual(["succeeded", "cheap"]);
    const attempt = result.ok ? result.payment.attempts[0]! : null;
    const [funded, feePaid] = await ledger.lookupTransfers([
      derivedLedgerId(attempt!.id, "fee-funded"),
      derivedLedgerId(attempt!.id, "fee-paid"),
    ]);
    expect(funded).toMatchObject({ amount: 3n, code: transferCodes.payments.capitalIn });
    expect(feePaid).toMatchObject({ amount: 3n, code: transferCodes.payments.feePaid });
    const [after] = await ledger.lookupAccounts([clearing.ledgerAccountId]);
    expect(after!.debitsPosted - after!.creditsPosted - after!.creditsPending).toBe(0n);
  });

  it("a fallback another process's recovery took first is left to it: no 500, the payment read back", async () => {
    leavesWorkOpen = true; // the other process's attempt is its to drive
    cheap.behaviour = "fail_retryable";
    // Just before this process writes its fallback attempt (seq 1), another process starting up writes its own.
    let raced = false;
    const racing: Db = {
      ...db,
      query: async (text, params) => {
        if (!raced && text.startsWith("INSERT INTO attempts") && params?.[2] === 1) {
          raced = true;
          await db.query(
            `INSERT INTO attempts (id, payment_id, seq, rail, status, amount, fee_max, reserve_transfer_id)
             VALUES ('att_other_process', $1, 1, 'dear', 'reserving', 100, 0, 1)`,
            [params[1]],
          );
        }
        return db.query(text, params);
      },
    };
    // Before: the unique (payment_id, seq) refused this process's insert, and createPayment threw (a 500).
    const result = await createPayment(depsWith(racing), request("k-raced-fallback"));
    expect(raced).toBe(true);
    expect(result.ok && result.payment.status).toBe("processing");
    expect(
      result.ok &&
        result.payment.attempts.map((a) => [a.id.startsWith("att_other") ? "other" : a.rail, a.seq]),
    ).toEqual([
      ["cheap", 0],
      ["other", 1],
    ]);
    expect(dear.calls).toBe(0);
  });

  it("does not fall back after a final failure, and releases the reservation", async () => {
    cheap.behaviour = "fail_final";
    const result = await createPayment(depsWith(db), request("k3"));
    expect(result.ok && result.payment.status).toBe("failed");
    expect(dear.calls).toBe(0);
    // Its event says why, and names no rail: none carried it.
    expect(await eventsOf(result)).toEqual([endEvent(result, "failed", { failure_code: "rejected" })]);
    expect(await customerBalance()).toEqual({
      posted: 1_000n,
      pendingOut: 0n,
      pendingIn: 0n,
      available: 1_000n,
    });
  });

  it("a rail's shortfall is told without the rail's own text, which may carry the shared balance", async () => {
    cheap.behaviour = "fail_liquidity";
    const result = await createPayment(depsWith(db), request("k-liquidity"));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.payment).toMatchObject({
      status: "failed",
      failureCode: "insufficient_liquidity",
      failureMessage: "the rail cannot send this amount now",
    });
    expect(result.payment.attempts[0]?.failureMessage).toBe("the rail cannot send this amount now");
    const stored = await getPayment(db, { tenantId, id: result.payment.id });
    expect(JSON.stringify(stored, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).not.toContain(
      "4321987",
    );
  });

  it("refuses a destination a rail owns (its hot wallet, a deposit address) before anything is written", async () => {
    const asked: unknown[] = [];
    dear.ownsDestination = async (destination) => {
      asked.push(destination);
      return destination.kind === "evm_address" && destination.address.toLowerCase() === payee;
    };
    const [before] = await db.query<{ count: bigint }>("SELECT count(*) AS count FROM payments");
    const result = await createPayment(depsWith(db), request("k-own"));
    expect(result).toMatchObject({
      ok: false,
      refusal: "destination_is_gateway",
      param: "destination.address",
    });
    expect(asked).toEqual([{ kind: "evm_address", address: payee }]);
    const [after] = await db.query<{ count: bigint }>("SELECT count(*) AS count FROM payments");
    expect(after!.count).toBe(before!.count);
    expect(paidEverywhere()).toBe(0n);
    expect(await customerBalance()).toEqual({
      posted: 1_000n,
      pendingOut: 0n,
      pendingIn: 0n,
      available: 1_000n,
    });
  });

  it("a crash after the first rail paid: recovery finds that payment and never pays on the second rail", async () => {
    cheap.behaviour = "crash_after_paying";
    await expect(createPayment(depsWith(db), request("k4"))).rejects.toThrow(Crash);
    // reserved, outcome not yet recorded: the amount, and the fee it may cost (cheap's fee 1 + 50 % head-room)
    expect((await customerBalance()).pendingOut).toBe(102n);
    cheap.behaviour = "fail_retryable"; // were it asked to pay again, it would now fail and tempt a fallback
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = 'k4'");
    const payment = await getPayment(db, { tenantId, id: row!.id });
    expect(payment?.status).toBe("succeeded");
    expect(payment?.rail).toBe("cheap");
    expect(dear.calls).toBe(0);
    expect(paidEverywhere()).toBe(100n);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a crash before the first rail paid: recovery pays once, on that rail", async () => {
    cheap.behaviour = "crash_before_paying";
    await expect(createPayment(depsWith(db), request("k5"))).rejects.toThrow(Crash);
    cheap.behaviour = "pay";
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 }); // a second pass finds nothing to do
    expect(cheap.paid.size).toBe(1);
    expect(dear.calls).toBe(0);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a crash between a failover and the next attempt: recovery goes on with the next rail, once", async () => {
    cheap.behaviour = "fail_retryable";
    await expect(
      // The first attempt is written with the payment; the second alone, and the process dies before it.
      createPayment(depsWith(dyingDb(db, /^\s*INSERT INTO attempts/, 1)), request("k6")),
    ).rejects.toThrow(Crash);
    expect(dear.calls).toBe(0);
    expect((await customerBalance()).pendingOut).toBe(0n); // the first reservation was voided before the crash
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    expect(dear.paid.size).toBe(1);
    expect(cheap.paid.size).toBe(0);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a fallback to a rail in another asset, priced longer ago than a quote may hold a price, is not paid at that price: the payment fails and nothing is held", async () => {
    cheap.behaviour = "fail_retryable";
    const created = createPayment(depsWith(dyingDb(db, /^\s*INSERT INTO attempts/, 1)), request("k6-stale"));
    await expect(created).rejects.toThrow(Crash);
    // The decision as a payment routed to a rail in another asset keeps it, routed past quoteTtlMsMax ago (its first
    // attempt in flight for that long, or every process down).
    const [row] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE source_account_id = $1 AND status = 'processing'",
      [customerId],
    );
    await db.query(
      `UPDATE payments p SET decision = jsonb_set(jsonb_set(
         COALESCE(p.decision::jsonb, (SELECT d.decision::jsonb FROM route_decisions d WHERE d.digest = p.decision_digest)),
         '{candidates,1,asset,code}', '"USD"'), '{snapshotTakenAtMs}', to_jsonb($2::bigint))::json
       WHERE id = $1`,
      [row!.id, Date.now() - quoteTtlMsMax - 60_000],
    );
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    expect(dear.calls).toBe(0);
    const [ended] = await db.query<{ status: string; failure_code: string; failure_message: string }>(
      "SELECT status, failure_code, failure_message FROM payments WHERE id = $1",
      [row!.id],
    );
    expect(ended).toMatchObject({ status: "failed", failure_code: "rail_unavailable" });
    expect(ended!.failure_message).toContain("pays in USD, at a rate taken");
    expect(await customerBalance()).toEqual({
      posted: 1_000n,
      pendingOut: 0n,
      pendingIn: 0n,
      available: 1_000n,
    });
  });

  it("a payment, its first attempt and their reservation are written together: a ledger that fails leaves none of them", async () => {
    const failingLedger: Ledger = {
      ...ledger,
      createTransfersWith: async () => {
        throw new Crash("died before the reservation");
      },
    };
    await expect(createPayment({ ...depsWith(db), ledger: failingLedger }, request("k7"))).rejects.toThrow(
      Crash,
    );
    expect(await db.query("SELECT id FROM payments WHERE idempotency_key = 'k7'")).toEqual([]);
    // The same Idempotency-Key then makes the payment, once.
    const again = await createPayment(depsWith(db), request("k7"));
    expect(again.ok && again.payment.status).toBe("succeeded");
    // A repeat returns that payment, marked as one the key already held.
    expect(await createPayment(depsWith(db), request("k7"))).toEqual({ ...again, replayed: true });
    expect(paidEverywhere()).toBe(100n);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a crash after a later attempt was written and before its reservation: recovery reserves and pays, once", async () => {
    cheap.behaviour = "fail_retryable";
    // The first attempt's reservation goes with the payment, its void with its status (createTransfersWith);
    // the second attempt is written alone, then reserved with its fee hold: the third createTransfersWith.
    let withCalls = 0;
    const dyingLedger: Ledger = {
      ...ledger,
      createTransfers: async () => {
        throw new Crash("died before the reservation");
      },
      createTransfersWith: async (transfers, alongside) => {
        withCalls += 1;
        if (withCalls === 3) throw new Crash("died before the reservation");
        return ledger.createTransfersWith(transfers, alongside);
      },
    };
    await expect(createPayment({ ...depsWith(db), ledger: dyingLedger }, request("k7b"))).rejects.toThrow(
      Crash,
    );
    expect(cheap.calls + dear.calls).toBe(1);
    const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = 'k7b'");
    const written = await getPayment(db, { tenantId, id: row!.id });
    expect(written?.attempts.map((a) => [a.rail, a.status])).toEqual([
      ["cheap", "failed"],
      ["dear", "reserving"],
    ]);
    expect((await customerBalance()).pendingOut).toBe(0n);
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    expect(dear.paid.size).toBe(1);
    expect(paidEverywhere()).toBe(100n);
    const again = await createPayment(depsWith(db), request("k7b"));
    expect(again.ok && again.payment.status).toBe("succeeded");
    expect(again.ok && again.payment.rail).toBe("dear");
    expect(paidEverywhere()).toBe(100n);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("an attempt left in reserving after its reservation was made (a crash before paying): recovery pays it once and ends it", async () => {
    cheap.behaviour = "crash_before_paying";
    await expect(createPayment(depsWith(db), request("k8"))).rejects.toThrow(Crash);
    const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = 'k8'");
    await db.query("UPDATE attempts SET status = 'reserving' WHERE payment_id = $1", [row!.id]);
    cheap.behaviour = "pay";
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    const payment = await getPayment(db, { tenantId, id: row!.id });
    expect(payment?.status).toBe("succeeded");
    expect(payment?.attempts.map((a) => [a.rail, a.status])).toEqual([["cheap", "succeeded"]]);
    expect(paidEverywhere()).toBe(100n);
    expect(await customerBalance()).toEqual({ posted: 900n, pendingOut: 0n, pendingIn: 0n, available: 900n });
  });

  it("a reservation the ledger refuses for another reason than a shortfall fails the payment as rejected", async () => {
    // The customer's account is closed (a pending closing transfer): the ledger answers
    // debit_account_already_closed on every rail. That is no shortfall, and no reason to answer 500.
    const [clearing] = await db.query<{ ledger_account_id: string }>(
      "SELECT ledger_account_id::text FROM accounts WHERE id = 'acct_clearing_cheap'",
    );
    const [closing] = await ledger.createTransfers([
      {
        id: 9_000_000n + BigInt(customerCount),
        debitAccountId: customerLedgerId,
        creditAccountId: BigInt(clearing!.ledger_account_id),
        amount: 0n,
        ledger: 1,
        code: transferCodes.payments.funding,
        flags: TransferFlags.pending | TransferFlags.closingDebit,
      },
    ]);
    expect(closing?.status).toBe("created");
    const result = await createPayment(depsWith(db), request("k-closed"));
    expect(result.ok && result.payment.status).toBe("failed");
    expect(result.ok && result.payment.failureCode).toBe("rejected");
    expect(result.ok && result.payment.attempts.map((a) => [a.rail, a.failureCode])).toEqual([
      ["cheap", "rejected"],
      ["dear", "rejected"],
    ]);
    expect(cheap.calls + dear.calls).toBe(0);
  });

  it("recovery drives every open attempt even when one of them cannot be driven, and says which", async () => {
    leavesWorkOpen = true; // the attempt no rail can drive stays open
    cheap.behaviour = "crash_before_paying";
    const stuck = createPayment(depsWith(db), request("k-rec-stuck"));
    await expect(stuck).rejects.toThrow(Crash);
    const after = createPayment(depsWith(db), request("k-rec-after"));
    await expect(after).rejects.toThrow(Crash);
    const [stuckRow] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-rec-stuck'",
    );
    const [afterRow] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-rec-after'",
    );
    // The older attempt (recovery takes them oldest first) cannot be driven; the younger one can.
    const real = cheap;
    real.behaviour = "pay";
    cheap = {
      ...real,
      execute: (attempt: OutgoingAttempt) =>
        attempt.paymentId === stuckRow!.id ? Promise.reject(new Crash("still down")) : real.execute(attempt),
    };
    try {
      const pass = recoverOpenAttempts(depsWith(db), { quietMs: 0 });
      await expect(pass).rejects.toThrow(RecoveryError);
      await expect(pass).rejects.toMatchObject({ attemptIds: [expect.stringMatching(/./)] });
    } finally {
      cheap = real;
    }
    expect((await getPayment(db, { tenantId, id: afterRow!.id }))?.status).toBe("succeeded");
    expect((await getPayment(db, { tenantId, id: stuckRow!.id }))?.status).toBe("processing");
  });

  it("recovery passes take in turn the open attempts none could end: one behind them is reached", async () => {
    leavesWorkOpen = true; // the attempts none could end stay open
    cheap.behaviour = "crash_before_paying";
    for (const key of ["k-turn-old", "k-turn-young"])
      await expect(createPayment(depsWith(db), request(key))).rejects.toThrow(Crash);
    const [young] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-turn-young'",
    );
    // Every open attempt but the youngest cannot be ended (a payment held by its receiver); a pass takes one.
    const real = cheap;
    real.behaviour = "pay";
    cheap = {
      ...real,
      execute: (attempt: OutgoingAttempt) =>
        attempt.paymentId === young!.id ? real.execute(attempt) : Promise.reject(new Crash("held")),
    };
    try {
      const [open] = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM attempts WHERE status IN ('reserving', 'in_flight')",
      );
      expect(open!.n).toBeGreaterThan(1);
      for (let pass = 0; pass < open!.n; pass++)
        await recoverOpenAttempts({ ...depsWith(db), recoveryBatchMax: 1 }, { quietMs: 0 }).catch(
          (error: unknown) => {
            if (!(error instanceof RecoveryError)) throw error;
          },
        );
    } finally {
      cheap = real;
    }
    // Before: every pass took the oldest open attempt again, and the youngest stayed processing for good.
    expect((await getPayment(db, { tenantId, id: young!.id }))?.status).toBe("succeeded");
  });

  it("recovery drives every stranded payment even when one of them cannot be driven, and says which", async () => {
    leavesWorkOpen = true; // the stranded payment that cannot be driven stays processing
    // Two payments stranded between their failed first attempt and the second, which was never written.
    cheap.behaviour = "fail_retryable";
    for (const key of ["k-str-stuck", "k-str-after"])
      await expect(
        createPayment(depsWith(dyingDb(db, /^\s*INSERT INTO attempts/, 1)), request(key)),
      ).rejects.toThrow(Crash);
    const idOf = async (key: string) =>
      (await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = $1", [key]))[0]!.id;
    const stuckId = await idOf("k-str-stuck");
    const afterId = await idOf("k-str-after");
    // The older one (taken first) cannot be driven on the dear rail; the younger one can.
    const real = dear;
    dear = {
      ...real,
      execute: (attempt: OutgoingAttempt) =>
        attempt.paymentId === stuckId ? Promise.reject(new Crash("still down")) : real.execute(attempt),
    };
    try {
      const pass = recoverOpenAttempts(depsWith(db), { quietMs: 0 });
      await expect(pass).rejects.toThrow(RecoveryError);
      // Before: the first one's error left the pass at once, and the other payment stayed processing.
      await expect(pass).rejects.toMatchObject({ paymentIds: [stuckId], attemptIds: [] });
    } finally {
      dear = real;
    }
    expect((await getPayment(db, { tenantId, id: afterId }))?.status).toBe("succeeded");
    expect((await getPayment(db, { tenantId, id: stuckId }))?.status).toBe("processing");
  });

  it("a stranded payment whose next rail this process lacks is left to a process with it", async () => {
    cheap.behaviour = "fail_retryable";
    await expect(
      createPayment(depsWith(dyingDb(db, /^\s*INSERT INTO attempts/, 1)), request("k-str-elsewhere")),
    ).rejects.toThrow(Crash);
    const [row] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-str-elsewhere'",
    );
    // And an attempt left open on dear: the process died before dear paid it.
    dear.behaviour = "crash_before_paying";
    await expect(createPayment(depsWith(db), request("k-open-elsewhere"))).rejects.toThrow(Crash);
    dear.behaviour = "pay";
    const dearCalls = dear.calls;
    // Before: "router chose unknown rail dear" on every pass of this process; and listed, each pass, before others.
    const withoutDear = { ...depsWith(db), rails: new Map<string, Rail>([[cheap.id, cheap]]) };
    const idsOf = (rows: readonly { id: string }[]) => rows.map((r) => r.id);
    expect(idsOf(await listStrandedPayments(db, { quietMs: 0, limit: 1_000 }))).toContain(row!.id);
    expect(
      idsOf(await listStrandedPayments(db, { quietMs: 0, limit: 1_000, rails: [cheap.id] })),
    ).not.toContain(row!.id);
    // Nor is an open attempt on dear one of its: not even listed (a thousand listed and skipped held back the rest).
    expect(
      (await listOpenAttempts(db, { quietMs: 0, limit: 1_000, rails: [cheap.id] })).filter(
        (a) => a.rail === "dear",
      ),
    ).toEqual([]);
    expect(
      (await listOpenAttempts(db, { quietMs: 0, limit: 1_000 })).filter((a) => a.rail === "dear").length,
    ).toBeGreaterThan(0);
    await recoverOpenAttempts(withoutDear, { quietMs: 0 });
    expect((await getPayment(db, { tenantId, id: row!.id }))?.status).toBe("processing");
    expect(dear.calls).toBe(dearCalls);
    await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    expect(await getPayment(db, { tenantId, id: row!.id })).toMatchObject({
      status: "succeeded",
      rail: "dear",
    });
    const [open] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-open-elsewhere'",
    );
    expect(await getPayment(db, { tenantId, id: open!.id })).toMatchObject({
      status: "succeeded",
      rail: "dear",
    });
  });

  it("recovery passes take in turn the stranded payments none could end: one behind them is reached", async () => {
    leavesWorkOpen = true; // the stranded payments none could end stay processing
    cheap.behaviour = "fail_retryable";
    for (const key of ["k-str-turn-old", "k-str-turn-young"])
      await expect(
        createPayment(depsWith(dyingDb(db, /^\s*INSERT INTO attempts/, 1)), request(key)),
      ).rejects.toThrow(Crash);
    const [young] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-str-turn-young'",
    );
    // Every stranded payment but the youngest cannot be driven on (its next attempt is never written); a pass
    // takes one.
    const refuse = (text: string, params?: readonly unknown[]) => {
      if (/^\s*INSERT INTO attempts/.test(text) && !(params ?? []).includes(young!.id))
        throw new Crash("still down");
    };
    const onlyYoung: Db = {
      ...db,
      query: async (text, params) => {
        refuse(text, params);
        return db.query(text, params);
      },
      queryAll: async (list) => {
        for (const statement of list) refuse(statement.text, statement.params);
        return db.queryAll(list);
      },
      transaction: (fn) =>
        db.transaction((tx) =>
          fn({
            query: async (text, params) => {
              refuse(text, params);
              return tx.query(text, params);
            },
          }),
        ),
    };
    const stranded = await listStrandedPayments(db, { quietMs: 0, limit: 1_000 });
    expect(stranded.map((row) => row.id)).toContain(young!.id);
    expect(stranded.length).toBeGreaterThan(1);
    for (let pass = 0; pass < stranded.length; pass++)
      await recoverOpenAttempts({ ...depsWith(onlyYoung), recoveryBatchMax: 1 }, { quietMs: 0 }).catch(
        (error: unknown) => {
          if (!(error instanceof RecoveryError)) throw error;
        },
      );
    // Before: every pass took the oldest stranded payment again, and the youngest stayed processing for good.
    expect((await getPayment(db, { tenantId, id: young!.id }))?.status).toBe("succeeded");
  });

  it("recovery asks the rails about several open attempts at once: one waiting on its rail holds no other back", async () => {
    cheap.behaviour = "crash_before_paying";
    for (const key of ["k-par-1", "k-par-2", "k-par-3"])
      await expect(createPayment(depsWith(db), { ...request(key), amount: "0.000010" })).rejects.toThrow(
        Crash,
      );
    // A rail that answers only once three attempts are with it at once (or after 5 s, whichever is first).
    const real = cheap;
    real.behaviour = "pay";
    let withRail = 0;
    let mostAtOnce = 0;
    let release: () => void = () => undefined;
    const three = new Promise<void>((resolve) => {
      release = resolve;
      setTimeout(resolve, 5_000);
    });
    cheap = {
      ...real,
      execute: async (attempt: OutgoingAttempt) => {
        withRail += 1;
        mostAtOnce = Math.max(mostAtOnce, withRail);
        if (withRail >= 3) release();
        await three;
        withRail -= 1;
        return real.execute(attempt);
      },
    };
    try {
      await recoverOpenAttempts(depsWith(db), { quietMs: 0 });
    } finally {
      cheap = real;
    }
    // Before: one after another, each waiting out its rail.
    expect(mostAtOnce).toBeGreaterThanOrEqual(3);
    for (const key of ["k-par-1", "k-par-2", "k-par-3"]) {
      const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = $1", [
        key,
      ]);
      expect((await getPayment(db, { tenantId, id: row!.id }))?.status).toBe("succeeded");
    }
  });

  it("two reports of one attempt's retryable failure at once fall back once: the one that did not end it leaves the next rail to the one that did", async () => {
    cheap.behaviour = "crash_before_paying";
    await expect(createPayment(depsWith(db), request("k-twice-failed"))).rejects.toThrow(Crash);
    const [row] = await db.query<{ id: string }>(
      "SELECT id FROM payments WHERE idempotency_key = 'k-twice-failed'",
    );
    const [attempt] = await db.query<{ id: string }>("SELECT id FROM attempts WHERE payment_id = $1", [
      row!.id,
    ]);
    const failed = {
      kind: "attempt_failed" as const,
      attemptId: attempt!.id,
      code: "rail_unavailable" as const,
      message: "cheap cannot be reached",
      retryElsewhere: true,
    };
    // Both read the attempt open before either ends it (a rail's event beside recovery, or a redelivered one). Before,
    // each went on to the next rail whether or not its own write ended the attempt: the second one's attempt 1 broke
    // the attempt's unique (payment, seq), or, had the first ended the payment, paid on the next rail regardless.
    const events = await Promise.allSettled([
      applyRailEvent(depsWith(db), failed),
      applyRailEvent(depsWith(db), failed),
    ]);
    expect(events.map((event) => event.status)).toEqual(["fulfilled", "fulfilled"]);
    expect(dear.paid.size).toBe(1);
    expect(cheap.paid.size).toBe(0);
    expect((await getPayment(db, { tenantId, id: row!.id }))?.status).toBe("succeeded");
    const attempts = await db.query<{ seq: number; status: string }>(
      "SELECT seq, status FROM attempts WHERE payment_id = $1 ORDER BY seq",
      [row!.id],
    );
    expect(attempts).toEqual([
      { seq: 0, status: "failed" },
      { seq: 1, status: "succeeded" },
    ]);
  });

  it("a late outcome for an attempt that already ended does not end its payment", async () => {
    leavesWorkOpen = true; // the payment stays processing: that is what it checks
    cheap.behaviour = "crash_before_paying";
    await expect(createPayment(depsWith(db), request("k-late"))).rejects.toThrow(Crash);
    const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = 'k-late'");
    const [attempt] = await db.query<{ id: string }>("SELECT id FROM attempts WHERE payment_id = $1", [
      row!.id,
    ]);
    // The attempt failed over (another attempt of the payment would now run) when a contradictory success arrives.
    await db.query("UPDATE attempts SET status = 'failed' WHERE id = $1", [attempt!.id]);
    const outboxBefore = await db.query("SELECT id FROM outbox");
    const finished = await finishAttempt(db, {
      attempt: { id: attempt!.id, to: "succeeded", fee: 1n },
      payment: {
        id: row!.id,
        status: "succeeded",
        rail: "cheap",
      },
    });
    expect(finished).toEqual({ attemptMoved: false, paymentFinishedAt: null, keyAnswered: false });
    const payment = await getPayment(db, { tenantId, id: row!.id });
    expect(payment?.status).toBe("processing");
    expect(await db.query("SELECT id FROM outbox")).toHaveLength(outboxBefore.length);
  });

  it("the write that ends a payment answers its key only when no answer is there and the payment ends in it", async () => {
    cheap.behaviour = "crash_before_paying";
    /** A payment left processing with its key's record written unanswered, and its attempt. */
    const stranded = async (key: string) => {
      const record = {
        key,
        requestSha256: Buffer.alloc(32, 7),
        answer: () => ({ status: 201, body: "{}" }),
        keptStatus: () => 201,
      };
      await expect(
        createPayment(depsWith(db), { ...request(key), idempotencyRecord: record }),
      ).rejects.toThrow(Crash);
      const [row] = await db.query<{ id: string }>("SELECT id FROM payments WHERE idempotency_key = $1", [
        key,
      ]);
      const [attempt] = await db.query<{ id: string }>("SELECT id FROM attempts WHERE payment_id = $1", [
        row!.id,
      ]);
      return { paymentId: row!.id, attemptId: attempt!.id };
    };
    const end = (ids: { paymentId: string; attemptId: string }, key: string) =>
      finishAttempt(db, {
        attempt: { id: ids.attemptId, to: "succeeded", fee: 1n },
        payment: {
          id: ids.paymentId,
          status: "succeeded",
          rail: "cheap",
          answering: { key, status: 201 },
        },
      });
    const keyRow = async (key: string) =>
      (
        await db.query<{ status: number | null; payment_id: string | null; body: string | null }>(
          `SELECT response_status AS status, payment_id, response_body::text AS body FROM idempotency_keys
           WHERE tenant_id = $1 AND key = $2`,
          [tenantId, key],
        )
      )[0];

    const open = await stranded("k-answer-open");
    expect(await keyRow("k-answer-open")).toEqual({ status: null, payment_id: null, body: null });
    expect(await end(open, "k-answer-open")).toMatchObject({ attemptMoved: true, keyAnswered: true });
    expect(await keyRow("k-answer-open")).toEqual({ status: 201, payment_id: open.paymentId, body: null });
    // Ended already: nothing moves, nothing is answered again.
    expect(await end(open, "k-answer-open")).toEqual({
      attemptMoved: false,
      paymentFinishedAt: null,
      keyAnswered: false,
    });

    // A 202 kept while it was processing stays the key's answer.
    const held = await stranded("k-answer-held");
    await db.query(
      `UPDATE idempotency_keys SET response_status = 202, response_body = '{"held":true}'
       WHERE tenant_id = $1 AND key = $2`,
      [tenantId, "k-answer-held"],
    );
    expect(await end(held, "k-answer-held")).toMatchObject({ attemptMoved: true, keyAnswered: false });
    expect(await keyRow("k-answer-held")).toEqual({ status: 202, payment_id: null, body: '{"held":true}' });
  });

  it("a payment made in one go reads nothing back, and answers what the database holds", async () => {
    const statements: string[] = [];
    const recorded = recordStatements(db, statements);
    const recordedLedger = createLedger({ ...gatewayLedgerParams, db: recorded });
    const deps = { ...depsWith(recorded), ledger: recordedLedger };
    await createPayment(deps, request("k9-warm")); // the account memory and the ledger writer's fill
    statements.length = 0;
    const result = await createPayment(deps, request("k9"));
    // The reservation's batch with the payment and its attempt; the post's with their final statuses and event.
    expect(statements).toEqual(["WITH+WITH", "WITH+WITH"]);
    expect(result.ok && result.payment).toEqual(
      await getPayment(db, { tenantId, id: result.ok ? result.payment.id : "" }),
    );
    cheap.behaviour = "fail_retryable";
    const failedOver = await createPayment(deps, request("k9-failover"));
    expect(failedOver.ok && failedOver.payment.rail).toBe("dear");
    expect(failedOver.ok && failedOver.payment).toEqual(
      await getPayment(db, { tenantId, id: failedOver.ok ? failedOver.payment.id : "" }),
    );
    dear.behaviour = "fail_final";
    const failed = await createPayment(deps, request("k9-failed"));
    expect(failed.ok && failed.payment.status).toBe("failed");
    expect(failed.ok && failed.payment).toEqual(
      await getPayment(db, { tenantId, id: failed.ok ? failed.payment.id : "" }),
    );
    const events = await db.query<{ type: string; id: string }>(
      "SELECT type, payload->>'payment_id' AS id FROM outbox WHERE payload->>'payment_id' = ANY($1::text[]) ORDER BY type",
      [[result, failedOver, failed].map((r) => (r.ok ? r.payment.id : ""))],
    );
    expect(events.map((e) => e.type).sort()).toEqual([
      "payment.failed",
      "payment.succeeded",
      "payment.succeeded",
    ]);
    await recordedLedger.close();
  });

  it("a decision stored before candidates named their destination reads back with the payment's", async () => {
    const result = await createPayment(depsWith(db), request("k-old-decision"));
    const id = result.ok ? result.payment.id : "";
    const [row] = await db.query<{ decision: unknown }>("SELECT decision FROM payments WHERE id = $1", [id]);
    const stored = (typeof row!.decision === "string" ? JSON.parse(row!.decision) : row!.decision) as {
      candidates: Array<Record<string, unknown>>;
    };
    for (const candidate of stored.candidates) delete candidate.destination;
    await db.query("UPDATE payments SET decision = $2 WHERE id = $1", [id, JSON.stringify(stored)]);
    const read = await getPayment(db, { tenantId, id });
    expect(read?.decision?.candidates.map((candidate) => candidate.destination)).toEqual(
      stored.candidates.map(() => ({ kind: "evm_address", address: payee })),
    );
  });
});

describe("a payment on a quote, the quote's rails changed since", () => {
  /** A quote of request(…)'s payment on the two toys, cheap first; `policy` as the quote's constraints. */
  async function quoted(deps: PaymentsDeps, policy: RoutePolicy = {}) {
    const created = await createPaymentQuote(deps, {
      tenantId,
      asset: "USDC",
      amount: "0.000100",
      destination: { kind: "evm_address", address: payee },
      policy,
      ttlMs: 60_000,
    });
    if (!created.ok) throw new Error(`no quote: ${created.refusal}`);
    expect(created.quote.decision.candidates.map((candidate) => candidate.rail)).toEqual(
      policy.maxFeeMicroUsd === undefined ? ["cheap", "dear"] : ["cheap"],
    );
    return { quoteId: created.id, locked: created.quote.decision.candidates };
  }
  const now = (rail: ToyRail, change: Partial<RailSnapshot>) => {
    const before = rail.snapshot();
    rail.snapshot = () => ({ ...before, ...change });
  };

  it("never goes to a rail the snapshot now rules out: the quote's next rail pays, at its locked price", async () => {
    // Down, its snapshot not trusted (route() calls it unavailable), its maximum below the locked amount.
    for (const [key, change] of [
      ["down", { available: false }],
      ["untrusted", { feeFixed: -1n }],
      ["maximum", { amountMax: 99n }],
    ] as const) {
      cheap = toyRail("cheap", 1n);
      const deps = depsWith(db);
      const { quoteId, locked } = await quoted(deps);
      now(cheap, change);
      const result = await createPayment(deps, { ...request(`k-quote-moved-${key}`), quoteId });
      expect([
        key,
        result.ok && result.payment.attempts.map((a) => [a.rail, a.status, a.amount, a.feeMax]),
      ]).toEqual([key, [["dear", "succeeded", locked[1]!.amount, locked[1]!.feeMax]]]);
      // Before: a rail whose snapshot was not trusted, or whose maximum the locked amount was above, paid it.
      expect([key, cheap.calls]).toEqual([key, 0]);
    }
  });

  it("refuses with quote_stale, writing nothing, when no rail the quote priced can take the payment now", async () => {
    const deps = depsWith(db);
    // The dear rail above the quote's fee cap, the cheap one chosen; then the cheap one goes down.
    const { quoteId } = await quoted(deps, { maxFeeMicroUsd: 3n });
    now(cheap, { circuit: "open" });
    const balance = await customerBalance();
    const result = await createPayment(deps, { ...request("k-quote-stale"), quoteId });
    // Before: fee_above_max (402), from the quote's own exclusion of the dear rail, though no cap was why.
    expect(result).toMatchObject({
      ok: false,
      refusal: "quote_stale",
      param: "quote",
      decision: {
        chosen: null,
        excluded: [
          { rail: "dear", reason: "fee_above_max" },
          { rail: "cheap", reason: "circuit_open" },
        ],
      },
    });
    expect([cheap.calls, dear.calls]).toEqual([0, 0]);
    expect(await customerBalance()).toEqual(balance);
    const written = await db.query("SELECT id FROM payments WHERE quote_id = $1", [quoteId]);
    expect(written).toEqual([]);
    // The quote is not used up: once its rail is back, it pays.
    now(cheap, { circuit: "closed" });
    const paid = await createPayment(deps, { ...request("k-quote-stale-back"), quoteId });
    expect(paid.ok && paid.payment.rail).toBe("cheap");
  });
});

describe("errors", () => {
  it("a broken invariant is a SwitchyardError, with the house's name and short message", () => {
    const error = new PaymentInvariantError("payment pay_x has no decision");
    expect(error).toBeInstanceOf(SwitchyardError);
    expect([error.name, error.shortMessage]).toEqual([
      "PaymentInvariantError",
      "payment pay_x has no decision",
    ]);
  });
});
