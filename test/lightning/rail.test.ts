// The Lightning rail against the regtest network: gateway's lnd behind the rail, payer and payee driven
// directly with `lightning`. Tests run in order; the last one restarts the gateway's lnd.
import { createHash, randomBytes } from "node:crypto";
import { fdatasync, writeSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type AuthenticatedLnd,
  authenticatedLndGrpc,
  cancelHodlInvoice,
  createHodlInvoice,
  createInvoice,
  decodePaymentRequest,
  getChannels,
  getInvoice,
  getPayments,
  getPendingPayments,
  type PayResult,
  pay,
  settleHodlInvoice,
} from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createFileRailStore,
  createLightningRail,
  type LightningRail,
  type LightningRailParams,
  type LightningRailStore,
} from "../../adapters/lightning/index.ts";
import { lateRegistrationMaxMs, lndClockBehindMaxMs } from "../../adapters/lightning/send.ts";
import type { JournalWrite } from "../../adapters/lightning/store.ts";
import type { OutgoingAttempt, RailEvent } from "../../core/index.ts";
import { clusterControl, waitFor } from "../../scripts/lightning/index.ts";
import {
  afterTakenOverByAnotherHost,
  journalAttemptLines,
  resumedToAddress,
} from "../support/lightning-journal.ts";
import { lnurlServer } from "../support/lnurl-server.ts";
import { type LogLine, recordingLogger } from "../support/recording-logger.ts";

const cluster = inject("lightningCluster");
const control = clusterControl(inject("lightningControlUrl"));
const client = (name: "gateway" | "payer" | "payee" | "remote"): AuthenticatedLnd =>
  authenticatedLndGrpc(cluster.nodes[name]).lnd;
const payer = client("payer");
const payee = client("payee");
const sha256 = (hex: string) => createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");

let directory = "";
let serial = 0;
const attemptId = (label: string) => `${label}-${Date.now()}-${++serial}`;

type Running = { rail: LightningRail; events: RailEvent[]; logs: LogLine[] };

async function startRail(
  store: string | LightningRailStore,
  limits: LightningRailParams["limits"] = {},
  lnd: LightningRailParams["lnd"] = cluster.nodes.gateway,
  now?: () => number,
  lnurlFetch?: LightningRailParams["lnurlFetch"],
): Promise<Running> {
  const events: RailEvent[] = [];
  const logs: LogLine[] = [];
  const rail = createLightningRail({
    lnd,
    ...(now === undefined ? {} : { now }),
    ...(lnurlFetch === undefined ? {} : { lnurlFetch }),
    store: typeof store === "string" ? createFileRailStore(path.join(directory, store)) : store,
    limits: { refreshIntervalMs: 500, reconnectDelayMaxMs: 1_000, executeWaitMs: 30_000, ...limits },
    logger: recordingLogger({ lines: logs }).logger,
  });
  rail.onEvent(async (event) => {
    events.push(event);
  });
  await rail.start();
  return { rail, events, logs };
}

/** Waits until the rail's journal says it forgot the invoice (its `invoice_done` line). */
const forgottenIn = (journal: string, paymentHash: string, timeoutMs: number) =>
  waitFor(
    "the unpaid invoice forgotten",
    async () =>
      (await readFile(journal, "utf8")).includes(`"invoice_done","paymentHash":"${paymentHash}"`)
        ? true
        : undefined,
    { timeoutMs },
  );

const bolt11 = (
  invoice: string,
  amount: bigint,
  feeMax: bigint,
  id = attemptId("bolt11"),
): OutgoingAttempt => ({
  id,
  paymentId: `payment-${id}`,
  tenantId: "ten_test",
  amount,
  destination: { kind: "bolt11", invoice },
  feeMax,
});

/** The journal's line of a BOLT11 attempt a process wrote ahead (`label` names its attempt and payment ids). */
const journalledAttempt = (
  label: string,
  invoice: { request: string; id: string },
  amountMsat: bigint,
  createdAtMs = Date.now(),
) => ({
  t: "attempt",
  attemptId: attemptId(label),
  paymentId: `payment-${label}`,
  paymentHash: invoice.id,
  kind: "bolt11",
  amountMsat: amountMsat.toString(),
  createdAtMs,
  feeMaxMsat: "10000",
  destination: null,
  request: invoice.request,
});

/** Makes an invoice on `rail` (its memo is the reference) and has the payer pay it. */
async function payThrough(rail: LightningRail, reference: string, amountMsat: bigint) {
  const invoice = await rail.createInvoice({ amountMsat, expirySeconds: 600, memo: reference, reference });
  await pay({ lnd: payer, request: invoice.request });
  return invoice;
}

/**
 * A rail on a journal of its own, which knows nothing of the invoice's payment, refuses to pay it: rejected, LND's
 * payment of it not taken for the attempt's (it never sent one).
 */
async function expectRefusedByAnotherJournal(journal: string, invoice: string, amountMsat: bigint) {
  const other = await startRail(journal);
  try {
    expect(await other.rail.execute(bolt11(invoice, amountMsat, 10_000n))).toMatchObject({
      status: "failed",
      code: "rejected",
    });
    expect(other.events.filter((e) => "attemptId" in e)).toEqual([]);
  } finally {
    await other.rail.stop();
  }
}

/**
 * A journal write (createFileRailStore's `write`) that fails as a full disk does, writing nothing, for the first append
 * holding a withdrawn line of `attemptId` (its mark), and writes every other; `failed` once it has failed.
 */
function markUnwritten(attemptId: string) {
  const disk = {
    failed: false,
    write: ((descriptor, bytes, offset, length) => {
      if (!disk.failed && bytes.toString("utf8").includes(`{"t":"withdrawn","attemptId":"${attemptId}"`)) {
        disk.failed = true;
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      }
      return writeSync(descriptor, bytes, offset, length);
    }) as JournalWrite,
  };
  return disk;
}

/**
 * A rail paying Lightning Addresses through `lnurlFetch`, on `journal` written through `disk` (markUnwritten): the
 * write of its attempt's mark fails as a full disk does.
 */
function startRailMarkUnwritten(
  journal: string,
  disk: ReturnType<typeof markUnwritten>,
  lnurlFetch: LightningRailParams["lnurlFetch"],
): Promise<Running> {
  return startRail(
    createFileRailStore(journal, { write: disk.write }),
    { lnurlHttpHosts: ["127.0.0.1"], executeWaitMs: 3_000 },
    cluster.nodes.gateway,
    undefined,
    lnurlFetch,
  );
}

/**
 * The mark of an attempt to a Lightning Address found never taken that kept `current`, the invoice that replaced
 * `earlier` (its expired first one), `earlier` kept among its earlier invoices.
 */
const markRenewedFrom = (
  attemptId: string,
  current: { id: string; request: string },
  earlier: { id: string; request: string },
  createdAtMs = Date.now(),
) => ({
  t: "withdrawn",
  attemptId,
  sent: true,
  createdAtMs,
  paymentHash: current.id,
  request: current.request,
  earlierHashes: [earlier.id],
  earlierRequests: { [earlier.id]: earlier.request },
});

/** The journal, loaded afresh, has the attempt succeeded under `paymentHash` with `payment`'s preimage and fee. */
async function expectReloadedSucceeded(
  journal: string,
  attemptId: string,
  paymentHash: string,
  payment: { secret: string; fee_mtokens: string },
) {
  const store = createFileRailStore(journal);
  try {
    const state = await store.load();
    expect(state.attempts.get(attemptId)).toMatchObject({
      paymentHash,
      outcome: { status: "succeeded", preimage: payment.secret, feeMsat: BigInt(payment.fee_mtokens) },
    });
    expect(state.forgottenSends.has(attemptId)).toBe(false);
  } finally {
    await store.close();
  }
}

let main: Running;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-test-"));
  main = await startRail("main.jsonl");
});

afterAll(async () => {
  await main?.rail.stop();
  await rm(directory, { recursive: true, force: true });
});

describe("lightning rail on regtest", () => {
  it("reports health, liquidity and a fee estimate for the router", async () => {
    await waitFor("liquidity", async () => main.rail.liquidity() ?? undefined, { timeoutMs: 10_000 });
    const snapshot = main.rail.snapshot();
    expect(snapshot).toMatchObject({ rail: "lightning", kind: "lightning", available: true });
    expect(snapshot.asset).toEqual({ code: "BTC", scale: 11, ledger: 3 });
    expect(snapshot.liquidity).toBeGreaterThan(0n);
    expect(main.rail.liquidity()?.inboundMsat).toBeGreaterThan(0n);

    // gateway → payee → remote: every route to the remote node is through the payee, which charges its routing fee.
    // (Not the payer: once it has paid the gateway, the gateway reaches it over their own channel, free.)
    const estimate = await main.rail.estimateFee({
      destination: { kind: "lightning_node", pubkey: cluster.nodes.remote.publicKey },
      amountMsat: 1_000_000n,
    });
    expect(estimate.ok && estimate.value.feeMsat).toBeGreaterThan(0n);
    const again = await main.rail.estimateFee({
      destination: { kind: "lightning_node", pubkey: cluster.nodes.remote.publicKey },
      amountMsat: 1_000_000n,
    });
    expect(again.ok && estimate.ok && again.value.takenAtMs).toBe(estimate.ok && estimate.value.takenAtMs);
  });

  it("receives: an invoice paid by the payer becomes one received event with hash and preimage", async () => {
    const invoice = await main.rail.createInvoice({
      amountMsat: 5_000_000n,
      expirySeconds: 600,
      memo: "receive test",
      reference: "invoice-receive-1",
    });
    const paid = await pay({ lnd: payer, request: invoice.request });
    const event = await waitFor(
      "received event",
      async () => main.events.find((e) => e.kind === "received" && e.reference === "invoice-receive-1"),
      { timeoutMs: 30_000 },
    );
    expect(event).toEqual({
      kind: "received",
      reference: "invoice-receive-1",
      amount: 5_000_000n,
      evidence: { rail: "lightning", paymentHash: invoice.paymentHash, preimage: paid.secret },
    });
    expect(sha256(paid.secret)).toBe(invoice.paymentHash);
    const described = await decodePaymentRequest({ lnd: payer, request: invoice.request });
    expect(described.description).toBe("receive test");
    expect(described.mtokens).toBe("5000000");
    // LND stamps invoices in whole seconds: its expiry is the rail's to within one.
    expect(Math.abs(Date.parse(described.expires_at) - invoice.expiresAtMs)).toBeLessThanOrEqual(1_000);

    const hashed = await main.rail.createInvoice({
      amountMsat: 1_000n,
      expirySeconds: 60,
      descriptionHash: "11".repeat(32),
      reference: "invoice-receive-2",
    });
    const decoded = await decodePaymentRequest({ lnd: payer, request: hashed.request });
    expect(decoded.description_hash).toBe("11".repeat(32));
    expect(decoded.mtokens).toBe("1000");
  });

  it("receive (the Rail contract's money in) offers a BOLT11 invoice whose payment is the received event", async () => {
    const offer = await main.rail.receive({
      reference: "invoice-receive-contract",
      amount: 2_000_000n,
      description: "through receive",
      expirySeconds: 600,
    });
    if (offer.status !== "offered") throw new Error(`refused: ${offer.message}`);
    const bolt11 = offer.instructions.bolt11 as string;
    expect(offer.instructions).toEqual({ method: "lightning", bolt11, payment_hash: offer.railReference });
    const described = await decodePaymentRequest({ lnd: payer, request: bolt11 });
    expect(described).toMatchObject({
      id: offer.railReference,
      mtokens: "2000000",
      description: "through receive",
    });
    await pay({ lnd: payer, request: bolt11 });
    const event = await waitFor(
      "received event",
      async () =>
        main.events.find((e) => e.kind === "received" && e.reference === "invoice-receive-contract"),
      { timeoutMs: 30_000 },
    );
    expect(event).toMatchObject({ amount: 2_000_000n, evidence: { paymentHash: offer.railReference } });
  });

  it("receive offers an invoice for a description longer than a memo holds, its memo cut between characters", async () => {
    // 300 characters of 3 bytes each: within the API's 500 characters, past BOLT11's 639 bytes.
    const description = "日本語".repeat(100);
    const offer = await main.rail.receive({
      reference: "invoice-receive-long-memo",
      amount: 1_000_000n,
      description,
      expirySeconds: 600,
    });
    // Before: refused, and the API answered 402 rail_unavailable for a description it had accepted.
    if (offer.status !== "offered") throw new Error(`refused: ${offer.message}`);
    const described = await decodePaymentRequest({
      lnd: payer,
      request: offer.instructions.bolt11 as string,
    });
    expect(described.description).toBe(description.slice(0, 213));
    expect(Buffer.byteLength(described.description ?? "")).toBe(639);
  });

  it("receive answers a refusal, not an error, when LND does not make the invoice", async () => {
    // LND connected and healthy, but AddInvoice refused: the rail holds LND's read-only macaroon.
    const { macaroonPath } = cluster.nodes.gateway;
    const readOnly = (await readFile(path.join(path.dirname(macaroonPath), "readonly.macaroon"))).toString(
      "base64",
    );
    const slow = await startRail(
      "receive-read-only.jsonl",
      {},
      { ...cluster.nodes.gateway, macaroon: readOnly },
    );
    try {
      expect(slow.rail.health().connected).toBe(true);
      // Before: the AddInvoice error was thrown out of receive, and the API answered 500.
      expect(
        await slow.rail.receive({
          reference: "invoice-receive-read-only",
          amount: 1_000_000n,
          description: "no invoice",
          expirySeconds: 600,
        }),
      ).toEqual({
        status: "refused",
        code: "rail_unavailable",
        message: expect.stringMatching(/^LND did not create the invoice: .*permission denied/),
      });
    } finally {
      await slow.rail.stop();
    }
  });

  it("sends a BOLT11 invoice once, and a retry of the attempt reports the first outcome", async () => {
    const invoice = await createInvoice({ lnd: payee, tokens: 2_000 });
    const attempt = bolt11(invoice.request, 2_000_000n, 10_000n);
    const outcome = await main.rail.execute(attempt);
    expect(outcome).toMatchObject({ status: "succeeded", fee: 0n, evidence: { paymentHash: invoice.id } });
    if (outcome.status !== "succeeded" || outcome.evidence.rail !== "lightning")
      throw new Error("unreachable");
    expect(sha256(outcome.evidence.preimage)).toBe(invoice.id);

    expect(await main.rail.execute(attempt)).toEqual(outcome);
    const { payments } = await getPayments({ lnd: client("gateway") });
    expect(payments.filter((payment) => payment.id === invoice.id)).toHaveLength(1);
    expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("2000000");
  });

  it("a second payment of an invoice paid already fails: the first one's preimage is not its proof", async () => {
    const invoice = await createInvoice({ lnd: payee, tokens: 1_234 });
    const first = await main.rail.execute(bolt11(invoice.request, 1_234_000n, 10_000n));
    expect(first.status).toBe("succeeded");
    // Before: succeeded with the first payment's preimage and fee, while LND sent nothing.
    expect(await main.rail.execute(bolt11(invoice.request, 1_234_000n, 10_000n))).toMatchObject({
      status: "failed",
      code: "rejected",
      retryElsewhere: false,
    });
    // A rail with a journal of its own (no record of the first attempt): LND refuses the send, and so does it.
    await expectRefusedByAnotherJournal("paid-elsewhere.jsonl", invoice.request, 1_234_000n);
    const { payments } = await getPayments({ lnd: client("gateway") });
    expect(payments.filter((payment) => payment.id === invoice.id)).toHaveLength(1);
    expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("1234000");
  });

  it("a payment of an invoice another one is paying fails, and the one paying ends as LND says", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_500 });
    const paying = bolt11(held.request, 1_500_000n, 10_000n);
    const first = main.rail.execute(paying);
    await waitFor(
      "HTLC held at the payee",
      async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
      { timeoutMs: 30_000 },
    );
    expect(await main.rail.execute(bolt11(held.request, 1_500_000n, 10_000n))).toMatchObject({
      status: "failed",
      code: "rejected",
    });
    // Before: LND's "payment is in transition" made it follow the first payment and take its success.
    await expectRefusedByAnotherJournal("in-transition.jsonl", held.request, 1_500_000n);
    await settleHodlInvoice({ lnd: payee, secret });
    expect(await first).toMatchObject({ status: "succeeded", evidence: { preimage: secret } });
  });

  it("a payout of an invoice the gateway's lnd paid outside the rail fails rejected: that payment is not its own", async () => {
    // The operator pays an invoice by hand through the gateway's node a moment before.
    const invoice = await createInvoice({ lnd: client("remote"), tokens: 1_000 });
    await pay({ lnd: client("gateway"), request: invoice.request, max_fee: 10 });
    // A payout of the same invoice, never sent before: LND refuses its send ("invoice is already paid"), a payment
    // this attempt did not make. Taken for it, the tenant was charged for the operator's payment.
    expect(await main.rail.execute(bolt11(invoice.request, 1_000_000n, 10_000n))).toMatchObject({
      status: "failed",
      code: "rejected",
      retryElsewhere: false,
    });
    expect(main.logs).toContainEqual(
      expect.objectContaining({
        level: "error",
        message: expect.stringMatching(/no attempt of this rail's journal sent/),
        fields: expect.objectContaining({
          paymentHash: invoice.id,
          error: expect.stringMatching(/already paid/),
        }),
      }),
    );
    const { payments } = await getPayments({ lnd: client("gateway") });
    expect(payments.filter((payment) => payment.id === invoice.id)).toHaveLength(1);
    expect((await getInvoice({ lnd: client("remote"), id: invoice.id })).received_mtokens).toBe("1000000");
  });

  it("an attempt found never taken whose send LND takes after is followed when sent afresh, not failed while LND pays it", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_600 });
    // A process wrote the attempt's line and sent it to a slow LND, which had not taken the send yet when the rail
    // asked for the hash (here after a restart; after a lost connection alike): LND answered it had no payment of the
    // hash, and the attempt was forgotten as never taken.
    const line = journalledAttempt("taken-late", held, 1_600_000n);
    const journal = path.join(directory, "taken-late.jsonl");
    await writeFile(journal, `${JSON.stringify(line)}\n`);
    const running = await startRail("taken-late.jsonl", { executeWaitMs: 60_000 });
    try {
      await waitFor(
        "the attempt forgotten",
        async () =>
          (await journalAttemptLines(journal, line.attemptId)).includes("withdrawn") ? true : undefined,
        { timeoutMs: 30_000 },
      );
      // Then LND takes that send (paid by hand through the gateway's node here, as that send is), held at the payee.
      const late = pay({ lnd: client("gateway"), request: held.request });
      await waitFor(
        "HTLC held at the payee",
        async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // The gateway's recovery executes the attempt: sent afresh, LND refuses it ("payment is in transition").
      const outcome = running.rail.execute({
        ...bolt11(held.request, 1_600_000n, 10_000n, line.attemptId),
        resumed: true,
      });
      // Before: failed rejected at once, its reservation released, while LND went on and paid it.
      expect(await Promise.race([outcome, sleep(1_000).then(() => "in flight")])).toBe("in flight");
      expect(running.logs).toContainEqual(
        expect.objectContaining({
          level: "warn",
          fields: expect.objectContaining({ paymentHash: id, error: expect.stringMatching(/in transition/) }),
        }),
      );
      await settleHodlInvoice({ lnd: payee, secret });
      expect(await outcome).toEqual({
        status: "succeeded",
        evidence: { rail: "lightning", paymentHash: id, preimage: secret },
        fee: 0n,
      });
      await late;
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === id)).toHaveLength(1);
      expect((await getInvoice({ lnd: payee, id })).received_mtokens).toBe("1600000");
      // Forgotten as one whose send LND may yet take, from its first line's time: a restart would know it too.
      expect(
        (await readFile(journal, "utf8")).split("\n").map((text) => text && JSON.parse(text)),
      ).toContainEqual({
        t: "withdrawn",
        attemptId: line.attemptId,
        sent: true,
        createdAtMs: line.createdAtMs,
        paymentHash: id,
        request: held.request,
      });
    } finally {
      await running.rail.stop();
    }
  });

  it("an attempt found never taken and sent afresh is not taken for LND's payment when it cannot be its own: another amount fails it, one made before its first line leaves it to an operator, one made since is its own", async () => {
    // Three attempts a process found never taken (withdrawn as such: `sent`), then each invoice paid by hand (as their
    // sends taken late are). The rail that sends them afresh has a clock two minutes ahead of LND's. Two were first
    // journalled by that clock; one at LND's now, as if sent afresh by the recovery two minutes after its first line.
    const open = await createInvoice({ lnd: payee });
    const priced = await createInvoice({ lnd: payee, tokens: 1_111 });
    const since = await createInvoice({ lnd: payee, tokens: 1_222 });
    const aheadMs = 120_000;
    const forgotten = [
      journalledAttempt("forgotten-amount", open, 2_000_000n, Date.now() + aheadMs),
      journalledAttempt("forgotten-before", priced, 1_111_000n, Date.now() + aheadMs),
      journalledAttempt("forgotten-since", since, 1_222_000n, Date.now()),
    ];
    const withdrawn = (line: (typeof forgotten)[number]) => ({
      t: "withdrawn",
      attemptId: line.attemptId,
      sent: true,
      createdAtMs: line.createdAtMs,
    });
    await writeFile(
      path.join(directory, "clock-ahead.jsonl"),
      forgotten.map((line) => `${JSON.stringify(line)}\n${JSON.stringify(withdrawn(line))}\n`).join(""),
    );
    await pay({ lnd: client("gateway"), request: open.request, tokens: 1_000 });
    await pay({ lnd: client("gateway"), request: priced.request });
    const bySince = await pay({ lnd: client("gateway"), request: since.request });
    const ahead = await startRail(
      "clock-ahead.jsonl",
      { executeWaitMs: 1_000 },
      cluster.nodes.gateway,
      () => Date.now() + aheadMs,
    );
    const [amount, before, sinceFirst] = forgotten as [
      (typeof forgotten)[number],
      (typeof forgotten)[number],
      (typeof forgotten)[number],
    ];
    try {
      // The amountless invoice paid 1,000 sat; the attempt pays 2,000: not its payment, nothing of it went out.
      expect(
        await ahead.rail.execute({
          ...bolt11(open.request, 2_000_000n, 10_000n, amount.attemptId),
          resumed: true,
        }),
      ).toMatchObject({ status: "failed", code: "rejected", retryElsewhere: false });
      expect(ahead.logs).toContainEqual(
        expect.objectContaining({
          message: expect.stringMatching(/not the attempt's: the attempt fails/),
          fields: expect.objectContaining({ attemptId: amount.attemptId }),
        }),
      );
      // Paid two minutes before the attempt's first line by LND's clock, more than the clocks may differ: maybe
      // another's. Neither outcome is booked: logged, the attempt left in flight for an operator.
      expect(
        await ahead.rail.execute({
          ...bolt11(priced.request, 1_111_000n, 10_000n, before.attemptId),
          resumed: true,
        }),
      ).toEqual({ status: "in_flight", reference: priced.id });
      await waitFor(
        "the doubt logged",
        async () =>
          ahead.logs.some(
            (line) =>
              /may not be the attempt's/.test(line.message) && line.fields.attemptId === before.attemptId,
          )
            ? true
            : undefined,
        { timeoutMs: 30_000 },
      );
      // Paid after its first line, though two minutes before its send afresh: its own (judged from the send afresh's
      // time alone, it was doubted and left in flight).
      expect(
        await ahead.rail.execute({
          ...bolt11(since.request, 1_222_000n, 10_000n, sinceFirst.attemptId),
          resumed: true,
        }),
      ).toEqual({
        status: "succeeded",
        evidence: { rail: "lightning", paymentHash: since.id, preimage: bySince.secret },
        fee: 0n,
      });
      expect(ahead.events.filter((e) => "attemptId" in e)).toEqual([]);
    } finally {
      await ahead.rail.stop();
    }
    const { payments } = await getPayments({ lnd: client("gateway") });
    const ids = new Set([open.id, priced.id, since.id]);
    expect(payments.filter((payment) => ids.has(payment.id))).toHaveLength(3);
  });

  it("an attempt found never taken whose invoice expired since is followed when LND refuses its send afresh as expired, and fails expired only when LND has no payment of it", async () => {
    // LND checks an invoice's expiry before it looks for a payment of its hash: a send afresh of an invoice expired
    // since the first send (which LND took late and is paying) is refused "invoice expired", not for that payment.
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const expiresAtMs = Date.now() + 8_000;
    const expires_at = new Date(expiresAtMs).toISOString();
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_700, expires_at });
    const unpaid = await createInvoice({ lnd: payee, tokens: 1_800, expires_at });
    const lines = [
      journalledAttempt("expired-late", held, 1_700_000n),
      journalledAttempt("expired-unpaid", unpaid, 1_800_000n),
    ];
    const [late, never] = lines as [(typeof lines)[number], (typeof lines)[number]];
    await writeFile(
      path.join(directory, "expired-late.jsonl"),
      lines
        .map(
          (line) =>
            `${JSON.stringify(line)}\n${JSON.stringify({ t: "withdrawn", attemptId: line.attemptId, sent: true, createdAtMs: line.createdAtMs })}\n`,
        )
        .join(""),
    );
    // The first send of one, taken late (paid by hand through the gateway's node, as it is), held at the payee.
    const paying = pay({ lnd: client("gateway"), request: held.request });
    await waitFor(
      "HTLC held at the payee",
      async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
      { timeoutMs: 30_000 },
    );
    await sleep(Math.max(0, expiresAtMs - Date.now()) + 1_000);
    const running = await startRail("expired-late.jsonl", { executeWaitMs: 60_000 });
    try {
      // Sent afresh by the gateway's recovery: LND refuses it as expired. Before: failed expired at once, its
      // reservation released, while LND went on and paid it.
      const outcome = running.rail.execute({
        ...bolt11(held.request, 1_700_000n, 10_000n, late.attemptId),
        resumed: true,
      });
      expect(await Promise.race([outcome, sleep(1_000).then(() => "in flight")])).toBe("in flight");
      await settleHodlInvoice({ lnd: payee, secret });
      expect(await outcome).toEqual({
        status: "succeeded",
        evidence: { rail: "lightning", paymentHash: id, preimage: secret },
        fee: 0n,
      });
      await paying;
      // LND has no payment of the other's hash: it fails as LND refused it, for good.
      expect(
        await running.rail.execute({
          ...bolt11(unpaid.request, 1_800_000n, 10_000n, never.attemptId),
          resumed: true,
        }),
      ).toMatchObject({ status: "failed", code: "expired", retryElsewhere: false, final: true });
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === id)).toHaveLength(1);
      expect(payments.filter((payment) => payment.id === unpaid.id)).toHaveLength(0);
      expect(running.events.filter((e) => "attemptId" in e)).toEqual([]);
    } finally {
      await running.rail.stop();
    }
  });

  it("an attempt found never taken that comes back when the rail cannot send it afresh is not failed while LND pays it: followed with its tenant's share full, in flight with its line unwritten or the rail stopped", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_900 });
    // Two attempts a process found never taken, whose first sends LND took late (paid by hand here, as they are).
    const taken = await createInvoice({ lnd: payee, tokens: 1_910 });
    const later = await createInvoice({ lnd: payee, tokens: 1_920 });
    const lines = [
      journalledAttempt("unsent-refused", taken, 1_910_000n),
      journalledAttempt("unsent-stopped", later, 1_920_000n),
    ];
    const [refused, stopped] = lines as [(typeof lines)[number], (typeof lines)[number]];
    const file = path.join(directory, "unsent-refused.jsonl");
    await writeFile(
      file,
      lines
        .map(
          (line) =>
            `${JSON.stringify(line)}\n${JSON.stringify({ t: "withdrawn", attemptId: line.attemptId, sent: true, createdAtMs: line.createdAtMs })}\n`,
        )
        .join(""),
    );
    const paid = await pay({ lnd: client("gateway"), request: taken.request });
    await pay({ lnd: client("gateway"), request: later.request });
    const journal = createFileRailStore(file);
    let refuseAttempts = false;
    const running = await startRail(
      {
        load: () => journal.load(),
        close: () => journal.close(),
        append: async (...records) => {
          if (refuseAttempts && records.some((record) => record.t === "attempt"))
            throw new Error("ENOSPC: no space left on device");
          await journal.append(...records);
        },
        held: () => journal.held(),
      },
      { inFlightMax: 4, executeWaitMs: 1_000 },
    );
    const resumed = (line: (typeof lines)[number], invoice: { request: string }, amount: bigint) => ({
      ...bolt11(invoice.request, amount, 10_000n, line.attemptId),
      tenantId: "ten_pinned",
      resumed: true,
    });
    const pinning = { ...bolt11(held.request, 1_900_000n, 10_000n), tenantId: "ten_pinned" };
    try {
      // Its tenant's one place is taken by a payment its payee holds. Before: failed rail_unavailable, retry elsewhere:
      // the gateway paid it on another rail while LND paid the first send.
      expect(await running.rail.execute(pinning)).toEqual({ status: "in_flight", reference: id });
      await waitFor(
        "HTLC held at the payee",
        async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // LND, asked about its hash, has the payment: followed, not sent (before: in flight, asked again every pass).
      expect(await running.rail.execute(resumed(refused, taken, 1_910_000n))).toEqual({
        status: "succeeded",
        evidence: { rail: "lightning", paymentHash: taken.id, preimage: paid.secret },
        fee: 0n,
      });
      await settleHodlInvoice({ lnd: payee, secret });
      await waitFor(
        "the held payment's success",
        async () => running.events.find((e) => e.kind === "attempt_succeeded" && e.attemptId === pinning.id),
        { timeoutMs: 30_000 },
      );
      // Its line cannot be written, nor the line of the payment LND has: nothing is sent afresh, nor followed unjournalled
      // (before: failed rail_unavailable, retry elsewhere).
      refuseAttempts = true;
      expect(await running.rail.execute(resumed(stopped, later, 1_920_000n))).toEqual({
        status: "in_flight",
        reference: later.id,
      });
      refuseAttempts = false;
    } finally {
      await running.rail.stop();
    }
    // The rail stopped (before: failed rail_unavailable, retry elsewhere).
    expect(await running.rail.execute(resumed(stopped, later, 1_920_000n))).toEqual({
      status: "in_flight",
      reference: later.id,
    });
    expect(running.logs).toContainEqual(
      expect.objectContaining({
        level: "warn",
        message: expect.stringMatching(/could not be sent afresh: left in flight/),
        fields: expect.objectContaining({ attemptId: stopped.attemptId, code: "rail_unavailable" }),
      }),
    );
    const { payments } = await getPayments({ lnd: client("gateway") });
    const ids = new Set([taken.id, later.id]);
    expect(payments.filter((payment) => ids.has(payment.id))).toHaveLength(2);
  });

  it("an attempt found never taken that the rail refuses for good (its amount above a limit lowered since) fails as refused once LND says it has no payment of its hash, not left in flight for ever", async () => {
    const unpaid = await createInvoice({ lnd: payee, tokens: 2_300 });
    const older = await createInvoice({ lnd: payee, tokens: 2_400 });
    const lines = [
      journalledAttempt("refused-for-good", unpaid, 2_300_000n),
      journalledAttempt("refused-old-mark", older, 2_400_000n),
    ];
    const [marked, old] = lines as [(typeof lines)[number], (typeof lines)[number]];
    await writeFile(
      path.join(directory, "refused-for-good.jsonl"),
      [
        marked,
        {
          t: "withdrawn",
          attemptId: marked.attemptId,
          sent: true,
          createdAtMs: marked.createdAtMs,
          paymentHash: unpaid.id,
          request: unpaid.request,
        },
        // A mark journalled before it kept what it sent: the hash is the invoice's.
        old,
        { t: "withdrawn", attemptId: old.attemptId, sent: true, createdAtMs: old.createdAtMs },
      ]
        .map((line) => `${JSON.stringify(line)}\n`)
        .join(""),
    );
    const running = await startRail("refused-for-good.jsonl", { amountMaxMsat: 2_000_000n });
    try {
      // Before: in flight, its reference the hash, asked again by every recovery pass and its reservation held for ever.
      for (const [line, invoice, amount] of [
        [marked, unpaid, 2_300_000n],
        [old, older, 2_400_000n],
      ] as const)
        expect(
          await running.rail.execute({
            ...bolt11(invoice.request, amount, 10_000n, line.attemptId),
            resumed: true,
          }),
        ).toEqual({
          status: "failed",
          code: "rejected",
          message: "amount outside 1..2000000 msat",
          retryElsewhere: true,
        });
      const { payments } = await getPayments({ lnd: client("gateway") });
      const ids = new Set([unpaid.id, older.id]);
      expect(payments.filter((payment) => ids.has(payment.id))).toEqual([]);
      expect(running.events.filter((e) => "attemptId" in e)).toEqual([]);
    } finally {
      await running.rail.stop();
    }
  });

  it("an attempt found never taken, refused when sent afresh, whose hash LND has a payment of that another attempt of the rail holds undecided, is left in flight, and fails as refused once that one succeeded", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 2_600 });
    // One attempt forgotten as never taken; the invoice then free, another payment's attempt of it written and sent,
    // which LND took (paid by hand here, as that send is) and its payee holds: LND's payment may be either's.
    const forgotten = journalledAttempt("undecided-forgotten", held, 2_600_000n);
    const holder = journalledAttempt("undecided-holder", held, 2_600_000n);
    await writeFile(
      path.join(directory, "undecided-holder.jsonl"),
      [
        forgotten,
        {
          t: "withdrawn",
          attemptId: forgotten.attemptId,
          sent: true,
          createdAtMs: forgotten.createdAtMs,
          paymentHash: id,
          request: held.request,
        },
        holder,
      ]
        .map((line) => `${JSON.stringify(line)}\n`)
        .join(""),
    );
    const paying = pay({ lnd: client("gateway"), request: held.request });
    await waitFor(
      "HTLC held at the payee",
      async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
      { timeoutMs: 30_000 },
    );
    // Refused when sent afresh: its amount above a limit lowered since.
    const running = await startRail("undecided-holder.jsonl", { amountMaxMsat: 2_000_000n });
    const resumed = { ...bolt11(held.request, 2_600_000n, 10_000n, forgotten.attemptId), resumed: true };
    try {
      // The other, followed since the start, is undecided. Before 91eba63: failed as refused (to be paid elsewhere)
      // while LND's payment may be this one's.
      expect(await running.rail.execute(resumed)).toEqual({ status: "in_flight", reference: id });
      expect(running.logs).toContainEqual(
        expect.objectContaining({
          level: "warn",
          fields: expect.objectContaining({
            attemptId: forgotten.attemptId,
            why: "another attempt of the rail holds its hash, undecided",
          }),
        }),
      );
      await settleHodlInvoice({ lnd: payee, secret });
      await waitFor(
        "the other's success",
        async () =>
          running.events.find((e) => e.kind === "attempt_succeeded" && e.attemptId === holder.attemptId),
        { timeoutMs: 30_000 },
      );
      await paying;
      // LND's payment is the other's: this one's send never reached LND, and its refusal stands.
      expect(await running.rail.execute(resumed)).toEqual({
        status: "failed",
        code: "rejected",
        message: "amount outside 1..2000000 msat",
        retryElsewhere: true,
      });
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === id)).toHaveLength(1);
    } finally {
      await running.rail.stop();
    }
  });

  it("an attempt to a Lightning Address found never taken is sent afresh with the invoice its address answered first, kept in the journal, not one asked anew", async () => {
    const { host, address, asked, lnurlFetch, close } = await lnurlServer(payee, "carol");
    const amount = 2_100_000n;
    const attempt = {
      id: attemptId("address"),
      paymentId: "payment-address",
      tenantId: "ten_test",
      amount,
      destination: { kind: "lightning_address", address },
      feeMax: 10_000n,
    } as const;
    try {
      // A process asked the address for an invoice and wrote the attempt's line (the invoice's), then stopped; the
      // rail started after found LND had no payment of it, and forgot it as never taken.
      const first = (await (await fetch(`http://${host}/callback/carol?amount=${amount}`)).json()) as {
        pr: string;
      };
      const invoice = (await decodePaymentRequest({ lnd: payee, request: first.pr })) as { id: string };
      const journal = path.join(directory, "address-late.jsonl");
      await writeFile(
        journal,
        `${JSON.stringify({ ...journalledAttempt("address", { id: invoice.id, request: first.pr }, amount), attemptId: attempt.id })}\n`,
      );
      const forgetting = await startRail("address-late.jsonl");
      try {
        await waitFor(
          "the attempt forgotten",
          async () =>
            (await journalAttemptLines(journal, attempt.id)).includes("withdrawn") ? true : undefined,
          { timeoutMs: 30_000 },
        );
      } finally {
        await forgetting.rail.stop();
      }
      // Kept with what it sent: its hash and its invoice.
      expect(
        (await readFile(journal, "utf8")).split("\n").map((text) => text && JSON.parse(text)),
      ).toContainEqual(
        expect.objectContaining({
          t: "withdrawn",
          attemptId: attempt.id,
          sent: true,
          paymentHash: invoice.id,
          request: first.pr,
        }),
      );
      // Then LND takes that first send (paid by hand through the gateway's node, as it is).
      const paid = await pay({ lnd: client("gateway"), request: first.pr });
      // Restarted (the mark read back from the journal), the rail is asked again by the gateway's recovery. Before: it
      // asked the address again, paid the new invoice, and the payee was paid twice.
      const running = await startRail(
        "address-late.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        undefined,
        lnurlFetch,
      );
      try {
        expect(await running.rail.execute({ ...attempt, resumed: true })).toEqual({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: invoice.id, preimage: paid.secret },
          fee: 0n,
        });
      } finally {
        await running.rail.stop();
      }
      expect(asked).toEqual([invoice.id]);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === invoice.id)).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it("an attempt to a Lightning Address found never taken whose first invoice expired since is sent with a new invoice of its address once LND says it has no payment of the first, and follows LND's payment of the first when it has one", async () => {
    const carol = await lnurlServer(payee, "carol");
    // Two attempts a process asked the address for an invoice for (expiring in seconds), wrote and forgot as never
    // taken, its mark keeping the invoice. LND took the first send of one late (paid by hand here, as it is).
    const expiresAtMs = Date.now() + 6_000;
    const invoiceOf = (amount: bigint) =>
      createInvoice({
        lnd: payee,
        mtokens: amount.toString(),
        description_hash: carol.descriptionHash,
        expires_at: new Date(expiresAtMs).toISOString(),
      });
    const unpaid = await invoiceOf(2_200_000n);
    const taken = await invoiceOf(2_250_000n);
    const lines = [
      journalledAttempt("address-expired", unpaid, 2_200_000n),
      journalledAttempt("address-expired-taken", taken, 2_250_000n),
    ];
    const [renewing, following] = lines as [(typeof lines)[number], (typeof lines)[number]];
    const journal = path.join(directory, "address-expired.jsonl");
    await writeFile(
      journal,
      lines
        .map(
          (line) =>
            `${JSON.stringify(line)}\n${JSON.stringify({ t: "withdrawn", attemptId: line.attemptId, sent: true, createdAtMs: line.createdAtMs, paymentHash: line.paymentHash, request: line.request })}\n`,
        )
        .join(""),
    );
    const paid = await pay({ lnd: client("gateway"), request: taken.request });
    await sleep(Math.max(0, expiresAtMs - Date.now()) + 2_000);
    const resumed = (line: (typeof lines)[number], amount: bigint) =>
      ({
        id: line.attemptId,
        paymentId: line.paymentId,
        tenantId: "ten_test",
        amount,
        destination: { kind: "lightning_address", address: carol.address },
        feeMax: 10_000n,
        resumed: true,
      }) as const;
    try {
      // The rail's clock a minute ahead of LND's, as far as it may be, and LND's past the first invoice's expiry by
      // the time a send of it taken before may still be registered (lateRegistrationMaxMs): by either clock.
      const running = await startRail(
        "address-expired.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        () => Date.now() + lndClockBehindMaxMs + lateRegistrationMaxMs,
        carol.lnurlFetch,
      );
      let renewed = "";
      try {
        // LND has no payment of the first invoice, which it can no longer send: the address is asked anew and its
        // invoice paid. Before: failed expired, though its address would answer another.
        const outcome = await running.rail.execute(resumed(renewing, 2_200_000n));
        expect(outcome).toMatchObject({ status: "succeeded" });
        expect(carol.asked).toHaveLength(1);
        renewed = carol.asked[0] as string;
        expect(renewed).not.toBe(unpaid.id);
        expect(outcome).toEqual({
          status: "succeeded",
          evidence: {
            rail: "lightning",
            paymentHash: renewed,
            preimage: (await getInvoice({ lnd: payee, id: renewed })).secret,
          },
          fee: 0n,
        });
        // LND has a payment of the other's first invoice: that one is followed, its address not asked.
        expect(await running.rail.execute(resumed(following, 2_250_000n))).toEqual({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: taken.id, preimage: paid.secret },
          fee: 0n,
        });
        expect(carol.asked).toEqual([renewed]);
      } finally {
        await running.rail.stop();
      }
      // The new invoice's mark is journalled before its attempt's line, so before its send: a crash between the two
      // sends it afresh, never the first. It names the first among its earlier hashes, asked about until it ends.
      const written = (await readFile(journal, "utf8"))
        .split("\n")
        .filter((text) => text !== "")
        .map((text) => JSON.parse(text));
      const markedAt = written.findIndex(
        (line) =>
          line.t === "withdrawn" &&
          line.attemptId === renewing.attemptId &&
          line.paymentHash === renewed &&
          JSON.stringify(line.earlierHashes) === JSON.stringify([unpaid.id]),
      );
      const sentAt = written.findIndex((line) => line.t === "attempt" && line.paymentHash === renewed);
      expect(markedAt).toBeGreaterThanOrEqual(0);
      expect(markedAt).toBeLessThan(sentAt);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === renewed)).toHaveLength(1);
      expect(payments.filter((payment) => payment.id === unpaid.id)).toEqual([]);
      expect(payments.filter((payment) => payment.id === taken.id)).toHaveLength(1);
      expect((await getInvoice({ lnd: payee, id: unpaid.id })).is_confirmed).toBe(false);
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address found never taken whose first invoice expired less than the time a send of it taken before may still be registered ago is answered in flight: neither that invoice sent, nor its address asked", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amount = 2_260_000n;
    const expiresAtMs = Date.now() + 6_000;
    const first = await createInvoice({
      lnd: payee,
      mtokens: amount.toString(),
      description_hash: carol.descriptionHash,
      expires_at: new Date(expiresAtMs).toISOString(),
    });
    const line = journalledAttempt("address-expiring", first, amount);
    const mark = {
      t: "withdrawn",
      attemptId: line.attemptId,
      sent: true,
      createdAtMs: line.createdAtMs,
      paymentHash: first.id,
      request: first.request,
    };
    // One journal for each clock, so that neither's answer is the other's.
    for (const name of ["address-expiring-now.jsonl", "address-expiring-ahead.jsonl"])
      await writeFile(path.join(directory, name), `${JSON.stringify(line)}\n${JSON.stringify(mark)}\n`);
    // Two seconds past its expiry, where most recoveries' first pass after it lands (one a minute).
    await sleep(Math.max(0, expiresAtMs - Date.now()) + 2_000);
    const resumed = {
      id: line.attemptId,
      paymentId: line.paymentId,
      tenantId: "ten_test",
      amount,
      destination: { kind: "lightning_address", address: carol.address },
      feeMax: 10_000n,
      resumed: true,
    } as const;
    const outcomes = [];
    try {
      // The gateway's clock as LND's, and two minutes ahead of it (past LND's clock margin, not the registration's).
      for (const [name, aheadMs] of [
        ["address-expiring-now.jsonl", 0],
        ["address-expiring-ahead.jsonl", 2 * 60_000],
      ] as const) {
        const running = await startRail(
          name,
          { lnurlHttpHosts: ["127.0.0.1"] },
          cluster.nodes.gateway,
          () => Date.now() + aheadMs,
          carol.lnurlFetch,
        );
        try {
          outcomes.push(await running.rail.execute(resumed));
        } finally {
          await running.rail.stop();
        }
      }
      // Before: the first sent again within a minute of its expiry, LND refused it as expired and the attempt failed
      // `expired`, for good; past that minute, its address was asked anew while LND could yet register a send of the
      // first, and both were paid.
      expect(outcomes).toEqual([
        { status: "in_flight", reference: first.id },
        { status: "in_flight", reference: first.id },
      ]);
      expect(carol.asked).toEqual([]);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.mtokens === amount.toString())).toEqual([]);
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address whose mark replaced its expired first invoice, LND having registered a send of the first late, follows that payment as its own: succeeds with it when the new invoice is unpaid, when the rail refuses it, and when the new invoice's payment fails, waiting while it is in flight; with both paid, ends with the new one's, said", async () => {
    const carol = await lnurlServer(payee, "carol");
    const invoiceOf = (amount: bigint) =>
      createInvoice({ lnd: payee, mtokens: amount.toString(), description_hash: carol.descriptionHash });
    // Each attempt's first invoice, replaced by the second when it expired (as addressInvoiceAfresh journals it). The
    // fourth attempt's are hold invoices, their payee holding a payment until it settles or cancels it.
    const amounts = { unsent: 2_270_000n, refused: 2_420_000n, both: 2_290_000n, ending: 2_280_000n };
    const secrets = { first: randomBytes(32).toString("hex"), second: randomBytes(32).toString("hex") };
    const held = (amount: bigint, secret: string) =>
      createHodlInvoice({
        lnd: payee,
        id: sha256(secret),
        mtokens: amount.toString(),
        description_hash: carol.descriptionHash,
      });
    const firsts = {
      unsent: await invoiceOf(amounts.unsent),
      refused: await invoiceOf(amounts.refused),
      both: await invoiceOf(amounts.both),
      ending: await held(amounts.ending, secrets.first),
    };
    const seconds = {
      unsent: await invoiceOf(amounts.unsent),
      refused: await invoiceOf(amounts.refused),
      both: await invoiceOf(amounts.both),
      ending: await held(amounts.ending, secrets.second),
    };
    const kinds = ["unsent", "refused", "both", "ending"] as const;
    type Kind = (typeof kinds)[number];
    const ids = Object.fromEntries(kinds.map((kind) => [kind, attemptId(`earlier-${kind}`)])) as Record<
      Kind,
      string
    >;
    await writeFile(
      path.join(directory, "address-earlier.jsonl"),
      kinds
        .map(
          (kind) =>
            `${JSON.stringify({ t: "withdrawn", attemptId: ids[kind], sent: true, createdAtMs: Date.now(), paymentHash: seconds[kind].id, request: seconds[kind].request, earlierHashes: [firsts[kind].id] })}\n`,
        )
        .join(""),
    );
    // LND registered a send of the first invoice of three of them late, after the second replaced it (paid by hand
    // here, as LND pays it); and of the second too, of one.
    const paidFirst = {
      unsent: await pay({ lnd: client("gateway"), request: firsts.unsent.request }),
      refused: await pay({ lnd: client("gateway"), request: firsts.refused.request }),
      both: await pay({ lnd: client("gateway"), request: firsts.both.request }),
    };
    const paidSecond = await pay({ lnd: client("gateway"), request: seconds.both.request });
    const resumed = (kind: Kind) =>
      ({
        id: ids[kind],
        paymentId: `payment-${ids[kind]}`,
        tenantId: "ten_test",
        amount: amounts[kind],
        destination: { kind: "lightning_address", address: carol.address },
        feeMax: 10_000n,
        resumed: true,
      }) as const;
    const logsOf = (running: Running, kind: Kind, level: string) =>
      running.logs.filter((line) => line.level === level && line.fields.attemptId === ids[kind]);
    try {
      // The refused one's amount above a limit lowered since.
      const running = await startRail(
        "address-earlier.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"], amountMaxMsat: 2_400_000n, executeWaitMs: 3_000 },
        cluster.nodes.gateway,
        undefined,
        carol.lnurlFetch,
      );
      try {
        // Before: each left in flight for an operator for good, its reservation held and LND's payment unbooked (and
        // the one with both paid never followed its second's).
        for (let pass = 0; pass < 2; pass += 1)
          for (const kind of ["unsent", "refused"] as const)
            expect(await running.rail.execute(resumed(kind))).toEqual({
              status: "succeeded",
              evidence: { rail: "lightning", paymentHash: firsts[kind].id, preimage: paidFirst[kind].secret },
              fee: BigInt(paidFirst[kind].fee_mtokens),
            });
        expect(await running.rail.execute(resumed("both"))).toEqual({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: seconds.both.id, preimage: paidSecond.secret },
          fee: BigInt(paidSecond.fee_mtokens),
        });
        expect(logsOf(running, "both", "error")).toEqual([
          expect.objectContaining({
            message: expect.stringMatching(/paid twice/),
            fields: expect.objectContaining({ earlierHash: firsts.both.id, status: "succeeded" }),
          }),
        ]);
        // The fourth's first is unpaid when LND is asked: its second is sent, and its payee holds the payment.
        expect(await running.rail.execute(resumed("ending"))).toEqual({
          status: "in_flight",
          reference: seconds.ending.id,
        });
        const heldAtPayee = (id: string) =>
          waitFor(
            "a payment held at the payee",
            async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
            { timeoutMs: 30_000 },
          );
        await heldAtPayee(seconds.ending.id);
        // LND registers a send of its first late, held too, and its payee cancels the second: that payment fails.
        // The attempt waits for the first's: neither failed (to be paid a third time elsewhere) nor left for good.
        const payingFirst = pay({ lnd: client("gateway"), request: firsts.ending.request });
        payingFirst.catch(() => {});
        await heldAtPayee(firsts.ending.id);
        await cancelHodlInvoice({ lnd: payee, id: seconds.ending.id });
        await waitFor(
          "the attempt waiting for its first invoice's payment",
          async () =>
            logsOf(running, "ending", "warn").some((line) => /waits/.test(line.message)) ? true : undefined,
          { timeoutMs: 30_000 },
        );
        const endingEvents = () =>
          running.events.filter((e) => "attemptId" in e && e.attemptId === ids.ending);
        // Several ticks (500 ms) asking again, said once.
        await sleep(2_000);
        expect(endingEvents()).toEqual([]);
        expect(logsOf(running, "ending", "warn").filter((line) => /waits/.test(line.message))).toHaveLength(
          1,
        );
        // Settled, the first's payment is the attempt's outcome. Before: never followed, in flight for good.
        await settleHodlInvoice({ lnd: payee, secret: secrets.first });
        const paid = await payingFirst;
        await waitFor("the attempt's outcome", async () => (endingEvents().length > 0 ? true : undefined), {
          timeoutMs: 30_000,
        });
        expect(endingEvents()).toEqual([
          {
            kind: "attempt_succeeded",
            attemptId: ids.ending,
            evidence: { rail: "lightning", paymentHash: firsts.ending.id, preimage: secrets.first },
            fee: BigInt(paid.fee_mtokens),
          },
        ]);
        expect(logsOf(running, "ending", "error")).toEqual([]);
        expect(await running.rail.execute(resumed("ending"))).toMatchObject({
          status: "succeeded",
          evidence: { paymentHash: firsts.ending.id },
        });
      } finally {
        await running.rail.stop();
      }
      expect(carol.asked).toEqual([]);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(
        payments.filter((payment) => payment.id === seconds.unsent.id || payment.id === seconds.refused.id),
      ).toEqual([]);
      // Journalled under the hash it ended with: a restart answers the same.
      const again = await startRail("address-earlier.jsonl", { lnurlHttpHosts: ["127.0.0.1"] });
      try {
        for (const [kind, hash] of [
          ["unsent", firsts.unsent.id],
          ["ending", firsts.ending.id],
          ["both", seconds.both.id],
        ] as const)
          expect(await again.rail.execute(resumed(kind))).toMatchObject({
            status: "succeeded",
            evidence: { paymentHash: hash },
          });
      } finally {
        await again.rail.stop();
      }
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address that follows LND's payment of an earlier invoice of its journals that invoice as what it paid: one the rail renewed, its new invoice's payment failing, and one whose mark kept its earlier invoice, its new one unpaid", async () => {
    const carol = await lnurlServer(payee, "carol", { held: true });
    const amounts = { renewed: 2_330_000n, marked: 2_340_000n };
    const invoiceOf = (amount: bigint, expiresAtMs?: number) =>
      createInvoice({
        lnd: payee,
        mtokens: amount.toString(),
        description_hash: carol.descriptionHash,
        ...(expiresAtMs === undefined ? {} : { expires_at: new Date(expiresAtMs).toISOString() }),
      });
    // The first's first invoice expires in an hour: the rail's clock is past that by the time a send of it taken
    // before may still be registered, and renews it (its address answering hold invoices). The second's mark replaced
    // its earlier invoice as the rail journals one now, keeping that invoice with its hash.
    const expiresAtMs = Date.now() + 60 * 60_000;
    const first = await invoiceOf(amounts.renewed, expiresAtMs);
    const [earlier, current] = [await invoiceOf(amounts.marked), await invoiceOf(amounts.marked)];
    const ids = { renewed: attemptId("followed-renewed"), marked: attemptId("followed-marked") };
    const journal = path.join(directory, "address-followed.jsonl");
    await writeFile(
      journal,
      [
        {
          t: "withdrawn",
          attemptId: ids.renewed,
          sent: true,
          createdAtMs: Date.now(),
          paymentHash: first.id,
          request: first.request,
        },
        {
          t: "withdrawn",
          attemptId: ids.marked,
          sent: true,
          createdAtMs: Date.now(),
          paymentHash: current.id,
          request: current.request,
          earlierHashes: [earlier.id],
          earlierRequests: { [earlier.id]: earlier.request },
        },
      ]
        .map((record) => `${JSON.stringify(record)}\n`)
        .join(""),
    );
    // LND registered a send of the second's earlier invoice late (paid by hand here, as LND pays it).
    const paidEarlier = await pay({ lnd: client("gateway"), request: earlier.request });
    const resumed = (kind: keyof typeof ids) =>
      ({
        id: ids[kind],
        paymentId: `payment-${ids[kind]}`,
        tenantId: "ten_test",
        amount: amounts[kind],
        destination: { kind: "lightning_address", address: carol.address },
        feeMax: 10_000n,
        resumed: true,
      }) as const;
    /** The attempt lines the journal has of `id`, in order: the last is the one a reload reads. */
    const attemptLines = async (id: string) =>
      (await readFile(journal, "utf8"))
        .split("\n")
        .filter((text) => text !== "")
        .map((text) => JSON.parse(text))
        .filter((line) => line.t === "attempt" && line.attemptId === id);
    try {
      const running = await startRail(
        "address-followed.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"], executeWaitMs: 3_000 },
        cluster.nodes.gateway,
        () => Date.now() + 60 * 60_000 + lndClockBehindMaxMs + lateRegistrationMaxMs + 60_000,
        carol.lnurlFetch,
      );
      try {
        const paidMarked = {
          evidence: { rail: "lightning", paymentHash: earlier.id, preimage: paidEarlier.secret },
          fee: BigInt(paidEarlier.fee_mtokens),
        } as const;
        const markedEvents = () =>
          running.events.filter((e) => "attemptId" in e && e.attemptId === ids.marked);
        // Its answer within executeWaitMs (3 s, for the other's to be in flight), or on a loaded machine its event.
        const marked = await running.rail.execute(resumed("marked"));
        if (marked.status === "in_flight")
          await waitFor(
            "the marked attempt's outcome",
            async () => (markedEvents().length > 0 ? true : undefined),
            {
              timeoutMs: 30_000,
            },
          );
        else expect(marked).toEqual({ status: "succeeded", ...paidMarked });
        expect(markedEvents()).toEqual(
          marked.status === "in_flight"
            ? [{ kind: "attempt_succeeded", attemptId: ids.marked, ...paidMarked }]
            : [],
        );
        // The first's new invoice is sent, and its payee holds the payment.
        expect(await running.rail.execute(resumed("renewed"))).toMatchObject({ status: "in_flight" });
        expect(carol.asked).toHaveLength(1);
        const renewed = carol.asked[0] as string;
        await waitFor(
          "the new invoice's payment held at the payee",
          async () => ((await getInvoice({ lnd: payee, id: renewed })).is_held ? true : undefined),
          { timeoutMs: 30_000 },
        );
        // LND registers a send of the first invoice late, and the payee cancels the new one's payment.
        const paidFirst = await pay({ lnd: client("gateway"), request: first.request });
        await cancelHodlInvoice({ lnd: payee, id: renewed });
        const renewedEvents = () =>
          running.events.filter((e) => "attemptId" in e && e.attemptId === ids.renewed);
        await waitFor("the attempt's outcome", async () => (renewedEvents().length > 0 ? true : undefined), {
          timeoutMs: 30_000,
        });
        expect(renewedEvents()).toEqual([
          {
            kind: "attempt_succeeded",
            attemptId: ids.renewed,
            evidence: { rail: "lightning", paymentHash: first.id, preimage: paidFirst.secret },
            fee: BigInt(paidFirst.fee_mtokens),
          },
        ]);
      } finally {
        await running.rail.stop();
      }
      // Each journalled last under the hash it paid, with the invoice it paid. Before: with none (only the hash of an
      // earlier invoice was kept), the journal's record of what was paid lacked its invoice.
      expect((await attemptLines(ids.renewed)).at(-1)).toMatchObject({
        paymentHash: first.id,
        request: first.request,
      });
      expect((await attemptLines(ids.marked)).at(-1)).toMatchObject({
        paymentHash: earlier.id,
        request: earlier.request,
      });
      // The renewed one's new mark keeps its first invoice with that invoice's hash.
      expect(
        (await readFile(journal, "utf8")).split("\n").map((text) => text && JSON.parse(text)),
      ).toContainEqual(
        expect.objectContaining({
          t: "withdrawn",
          attemptId: ids.renewed,
          paymentHash: carol.asked[0],
          earlierHashes: [first.id],
          earlierRequests: { [first.id]: first.request },
        }),
      );
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === current.id)).toEqual([]);
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address whose own payment failed, following LND's payment of an earlier invoice of its while the disk is full, reads back under that invoice's hash: its mark is written with its line or not at all", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amount = 2_360_000n;
    const secret = randomBytes(32).toString("hex");
    // Its earlier invoice, replaced when it expired, and its current one, a hold invoice: its payee holds a payment of
    // it until it cancels it.
    const earlier = await createInvoice({
      lnd: payee,
      mtokens: amount.toString(),
      description_hash: carol.descriptionHash,
    });
    const current = await createHodlInvoice({
      lnd: payee,
      id: sha256(secret),
      mtokens: amount.toString(),
      description_hash: carol.descriptionHash,
    });
    const id = attemptId("earlier-mark-unwritten");
    const journal = path.join(directory, "earlier-mark-unwritten.jsonl");
    await writeFile(journal, `${JSON.stringify(markRenewedFrom(id, current, earlier))}\n`);
    const disk = markUnwritten(id);
    const resumed = resumedToAddress(id, amount, carol.address);
    try {
      const running = await startRailMarkUnwritten(journal, disk, carol.lnurlFetch);
      let paidEarlier: PayResult;
      try {
        // LND has a payment of neither invoice: the current one is sent afresh, and its payee holds the payment.
        expect(await running.rail.execute(resumed)).toMatchObject({ status: "in_flight" });
        await waitFor(
          "the current invoice's payment held at the payee",
          async () => ((await getInvoice({ lnd: payee, id: current.id })).is_held ? true : undefined),
          { timeoutMs: 30_000 },
        );
        // LND registers a send of the earlier invoice late, and the payee cancels the current one's payment: the
        // attempt follows the earlier's payment, and the write of its mark fails.
        paidEarlier = await pay({ lnd: client("gateway"), request: earlier.request });
        await cancelHodlInvoice({ lnd: payee, id: current.id });
        await waitFor("the mark's write failed", async () => (disk.failed ? true : undefined), {
          timeoutMs: 30_000,
        });
        // Its line unwritten with it, the attempt is forgotten, its mark standing: an execute follows that payment.
        const paid = await waitFor(
          "the attempt's success",
          async () => {
            const outcome = await running.rail.execute(resumed);
            return outcome.status === "succeeded" ? outcome : undefined;
          },
          { timeoutMs: 60_000 },
        );
        expect(paid).toEqual({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: earlier.id, preimage: paidEarlier.secret },
          fee: BigInt(paidEarlier.fee_mtokens),
        });
      } finally {
        await running.rail.stop();
      }
      // Before: the mark's failure was only logged and the line written after it, which a reload ignored (an id's first
      // attempt line is kept): the attempt read back as succeeded under the current invoice's hash, with the earlier
      // one's preimage.
      await expectReloadedSucceeded(journal, id, earlier.id, paidEarlier);
      expect(carol.asked).toEqual([]);
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address found never taken, its mark's write failed, that follows LND's payment of an earlier invoice of its when sent afresh reads back under that invoice's hash: the mark is written again ahead of its line", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amount = 2_370_000n;
    const invoiceOf = () =>
      createInvoice({ lnd: payee, mtokens: amount.toString(), description_hash: carol.descriptionHash });
    // Its earlier invoice, replaced when it expired, and its current one, whose line a process wrote before it stopped
    // without sending it.
    const [earlier, current] = [await invoiceOf(), await invoiceOf()];
    const id = attemptId("forgotten-mark-unwritten");
    const journal = path.join(directory, "forgotten-mark-unwritten.jsonl");
    const createdAtMs = Date.now();
    await writeFile(
      journal,
      [
        markRenewedFrom(id, current, earlier, createdAtMs),
        {
          t: "attempt",
          attemptId: id,
          paymentId: `payment-${id}`,
          paymentHash: current.id,
          kind: "bolt11",
          amountMsat: amount.toString(),
          createdAtMs,
          feeMaxMsat: "10000",
          destination: null,
          request: current.request,
        },
      ]
        .map((record) => `${JSON.stringify(record)}\n`)
        .join(""),
    );
    // LND registered a send of the earlier invoice late (paid by hand here, as LND pays it).
    const paidEarlier = await pay({ lnd: client("gateway"), request: earlier.request });
    const disk = markUnwritten(id);
    try {
      const running = await startRailMarkUnwritten(journal, disk, carol.lnurlFetch);
      try {
        // Followed at start, LND has no payment of its current invoice: it is found never taken, and the write of its
        // mark fails (only logged: the mark stands in memory).
        await waitFor("the mark's write failed", async () => (disk.failed ? true : undefined), {
          timeoutMs: 30_000,
        });
        // Sent afresh, LND has a payment of its earlier invoice: followed as its own.
        expect(await running.rail.execute(resumedToAddress(id, amount, carol.address))).toEqual({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: earlier.id, preimage: paidEarlier.secret },
          fee: BigInt(paidEarlier.fee_mtokens),
        });
      } finally {
        await running.rail.stop();
      }
      // Before: the line of the payment followed was written alone after the current invoice's, which a reload kept
      // (an id's first attempt line, no mark between them): the attempt read back as succeeded under the current
      // invoice's hash, with the earlier one's preimage.
      await expectReloadedSucceeded(journal, id, earlier.id, paidEarlier);
      expect(carol.asked).toEqual([]);
    } finally {
      await carol.close();
    }
  });

  it("an attempt followed after a restart whose mark names its own hash among the earlier (renewals that raced) succeeds without a false payee-paid-twice error; and a Lightning Address's first invoice found never taken is not sent in the minute before its expiry", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amounts = { raced: 2_310_000n, expiring: 2_320_000n };
    const invoiceOf = (amount: bigint, expiresAtMs?: number) =>
      createInvoice({
        lnd: payee,
        mtokens: amount.toString(),
        description_hash: carol.descriptionHash,
        ...(expiresAtMs === undefined ? {} : { expires_at: new Date(expiresAtMs).toISOString() }),
      });
    // Two renewals of one attempt raced: the one sent (its attempt line after) was named among the earlier hashes of
    // the other's mark, written last. LND paid the one sent.
    const [first, sent, other] = [
      await invoiceOf(amounts.raced),
      await invoiceOf(amounts.raced),
      await invoiceOf(amounts.raced),
    ];
    const line = journalledAttempt("raced", sent, amounts.raced);
    const mark = {
      t: "withdrawn",
      attemptId: line.attemptId,
      sent: true,
      createdAtMs: line.createdAtMs,
      paymentHash: other.id,
      request: other.request,
      earlierHashes: [first.id, sent.id],
    };
    // An attempt whose first invoice expires in 30 s, found never taken.
    const expiring = await invoiceOf(amounts.expiring, Date.now() + 30_000);
    const expiringId = attemptId("expiring");
    const expiringMark = {
      t: "withdrawn",
      attemptId: expiringId,
      sent: true,
      createdAtMs: Date.now(),
      paymentHash: expiring.id,
      request: expiring.request,
    };
    await writeFile(
      path.join(directory, "address-raced.jsonl"),
      [mark, line, expiringMark].map((record) => `${JSON.stringify(record)}\n`).join(""),
    );
    const paid = await pay({ lnd: client("gateway"), request: sent.request });
    try {
      const running = await startRail(
        "address-raced.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        undefined,
        carol.lnurlFetch,
      );
      try {
        await waitFor(
          "the raced attempt's outcome",
          async () =>
            running.events.some((e) => "attemptId" in e && e.attemptId === line.attemptId) ? true : undefined,
          { timeoutMs: 30_000 },
        );
        expect(running.events.filter((e) => "attemptId" in e && e.attemptId === line.attemptId)).toEqual([
          {
            kind: "attempt_succeeded",
            attemptId: line.attemptId,
            evidence: { rail: "lightning", paymentHash: sent.id, preimage: paid.secret },
            fee: BigInt(paid.fee_mtokens),
          },
        ]);
        // Before: its own payment taken for an earlier invoice's, "paid twice" logged as an error.
        expect(
          running.logs.filter(
            (entry) => entry.level === "error" && entry.fields.attemptId === line.attemptId,
          ),
        ).toEqual([]);
        // Sent now, LND's clock a little ahead would refuse it as expired, and the attempt fail `expired` for good.
        expect(
          await running.rail.execute({
            id: expiringId,
            paymentId: `payment-${expiringId}`,
            tenantId: "ten_test",
            amount: amounts.expiring,
            destination: { kind: "lightning_address", address: carol.address },
            feeMax: 10_000n,
            resumed: true,
          }),
        ).toEqual({ status: "in_flight", reference: expiring.id });
      } finally {
        await running.rail.stop();
      }
      expect(carol.asked).toEqual([]);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === expiring.id)).toEqual([]);
    } finally {
      await carol.close();
    }
  });

  it("an attempt to a Lightning Address found never taken whose mark kept no invoice (journalled before it did), its address refusing, fails as refused when LND has no payment that may be its, and is left in flight, said once, when it has one", async () => {
    const server = await lnurlServer(payee, "carol");
    // The address refuses now: no such name (any refusal of its server alike).
    const refusing = `gone@${server.host}`;
    // Marks journalled before they kept what the attempt sent, alone once compacted: no hash, no invoice.
    const amounts = [2_345_671n, 2_345_672n];
    const ids = amounts.map(() => attemptId("address-unmarked"));
    const [none, maybe] = ids as [string, string];
    const firstAtMs = Date.now();
    await writeFile(
      path.join(directory, "address-unmarked.jsonl"),
      ids
        .map(
          (id) =>
            `${JSON.stringify({ t: "withdrawn", attemptId: id, sent: true, createdAtMs: firstAtMs })}\n`,
        )
        .join(""),
    );
    // A payment of the other's amount made since its first line, through the gateway's node: maybe its first send,
    // taken late (paid by hand here, to another invoice of the payee's, as the address's may be).
    const since = await createInvoice({ lnd: payee, mtokens: "2345672" });
    await pay({ lnd: client("gateway"), request: since.request });
    const resumed = (id: string, amount: bigint) =>
      ({
        id,
        paymentId: `payment-${id}`,
        tenantId: "ten_test",
        amount,
        destination: { kind: "lightning_address", address: refusing },
        feeMax: 10_000n,
        resumed: true,
      }) as const;
    try {
      const running = await startRail(
        "address-unmarked.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        undefined,
        server.lnurlFetch,
      );
      try {
        // None of its amount since its first line: it fails as its address refused. Before: in flight for ever, its
        // hash unknown.
        expect(await running.rail.execute(resumed(none, 2_345_671n))).toEqual({
          status: "failed",
          code: "unreachable_destination",
          message: `${refusing} has no LNURL pay request`,
          retryElsewhere: true,
        });
        // One, which may be its own: in flight, as often as it is asked, said once (before: at every pass).
        for (let pass = 0; pass < 2; pass += 1)
          expect(await running.rail.execute(resumed(maybe, 2_345_672n))).toEqual({
            status: "in_flight",
            reference: maybe,
          });
        const said = running.logs.filter((line) => line.level === "warn" && line.fields.attemptId === maybe);
        expect(said).toEqual([
          expect.objectContaining({
            message: expect.stringMatching(/may be one of LND's payments: .*left in flight for an operator/),
            fields: expect.objectContaining({ paymentHashes: [since.id] }),
          }),
        ]);
      } finally {
        await running.rail.stop();
      }
      expect(server.asked).toEqual([]);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.mtokens === "2345671")).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it("an attempt to a Lightning Address found never taken whose mark kept no invoice, held back by LND's payments that may be its own, names the first ten in its one log line and counts them all", async () => {
    const server = await lnurlServer(payee, "carol");
    const amount = 2_345_673n;
    const id = attemptId("address-unmarked-many");
    await writeFile(
      path.join(directory, "address-unmarked-many.jsonl"),
      `${JSON.stringify({ t: "withdrawn", attemptId: id, sent: true, createdAtMs: Date.now() })}\n`,
    );
    // Eleven payments of its amount since its first line, each maybe its first send taken late.
    const paid: string[] = [];
    for (let made = 0; made < 11; made += 1) {
      const invoice = await createInvoice({ lnd: payee, mtokens: amount.toString() });
      await pay({ lnd: client("gateway"), request: invoice.request });
      paid.push(invoice.id);
    }
    try {
      const running = await startRail(
        "address-unmarked-many.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        undefined,
        server.lnurlFetch,
      );
      try {
        expect(
          await running.rail.execute({
            id,
            paymentId: `payment-${id}`,
            tenantId: "ten_test",
            amount,
            destination: { kind: "lightning_address", address: `gone@${server.host}` },
            feeMax: 10_000n,
            resumed: true,
          }),
        ).toEqual({ status: "in_flight", reference: id });
        const said = running.logs.filter((line) => line.level === "warn" && line.fields.attemptId === id);
        expect(said).toEqual([
          expect.objectContaining({
            message: expect.stringMatching(/left in flight for an operator/),
            fields: expect.objectContaining({ paymentCount: 11 }),
          }),
        ]);
        // Ten of them, whichever LND listed first: a line of every one would grow with LND's history.
        const named = said[0]?.fields.paymentHashes as string[];
        expect(named).toHaveLength(10);
        expect(paid).toEqual(expect.arrayContaining(named));
      } finally {
        await running.rail.stop();
      }
      expect(server.asked).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it("an attempt to a Lightning Address found never taken whose mark kept no invoice is held back by a payment of LND's that may be its own: one an attempt of the rail that failed holds, one made before its first line by a clock far behind the gateway's, and one its address answering would have been paid beside", async () => {
    const carol = await lnurlServer(payee, "carol");
    const refusing = `gone@${carol.host}`;
    const amounts = { heldFailed: 2_345_681n, behind: 2_345_682n, answering: 2_345_683n, fresh: 2_345_684n };
    const kinds = ["heldFailed", "behind", "answering", "fresh"] as const;
    const ids = Object.fromEntries(kinds.map((kind) => [kind, attemptId(`unmarked-${kind}`)])) as Record<
      (typeof kinds)[number],
      string
    >;
    // LND's payments of three of the amounts, made now through the gateway's node (maybe their first sends, taken
    // late). The first is of an invoice an attempt of the rail's journal paid and failed: LND's payment, when its
    // send was refused, may be the forgotten one's.
    const paidNow = async (amount: bigint) => {
      const invoice = await createInvoice({ lnd: payee, mtokens: amount.toString() });
      await pay({ lnd: client("gateway"), request: invoice.request });
      return invoice;
    };
    const held = await paidNow(amounts.heldFailed);
    const behind = await paidNow(amounts.behind);
    const answered = await paidNow(amounts.answering);
    const holder = journalledAttempt("unmarked-holder", held, amounts.heldFailed);
    // Marks journalled before they kept what the attempt sent; the second's by a gateway whose clock was five minutes
    // ahead of LND's.
    const firstAtMs = (kind: (typeof kinds)[number]) => Date.now() + (kind === "behind" ? 5 * 60_000 : 0);
    await writeFile(
      path.join(directory, "address-unmarked-held.jsonl"),
      [
        holder,
        {
          t: "outcome",
          attemptId: holder.attemptId,
          status: "failed",
          code: "rejected",
          message: "the invoice was paid already, or is being paid, by another payment",
          retryElsewhere: false,
        },
        { t: "reported", attemptId: holder.attemptId },
        ...kinds.map((kind) => ({
          t: "withdrawn",
          attemptId: ids[kind],
          sent: true,
          createdAtMs: firstAtMs(kind),
        })),
      ]
        .map((line) => `${JSON.stringify(line)}\n`)
        .join(""),
    );
    const resumed = (kind: (typeof kinds)[number]) =>
      ({
        id: ids[kind],
        paymentId: `payment-${ids[kind]}`,
        tenantId: "ten_test",
        amount: amounts[kind],
        destination: {
          kind: "lightning_address",
          address: kind === "heldFailed" || kind === "behind" ? refusing : carol.address,
        },
        feeMax: 10_000n,
        resumed: true,
      }) as const;
    try {
      const running = await startRail(
        "address-unmarked-held.jsonl",
        { lnurlHttpHosts: ["127.0.0.1"] },
        cluster.nodes.gateway,
        undefined,
        carol.lnurlFetch,
      );
      try {
        // Before: the first two failed as their address refused (LND's payment taken for the failed attempt's, or
        // missed before the minute's margin), to be paid elsewhere; the third's address was asked anew and paid.
        const outcomes = [];
        for (const kind of ["heldFailed", "behind", "answering", "answering"] as const)
          outcomes.push(await running.rail.execute(resumed(kind)));
        expect(outcomes).toEqual([
          { status: "in_flight", reference: ids.heldFailed },
          { status: "in_flight", reference: ids.behind },
          { status: "in_flight", reference: ids.answering },
          { status: "in_flight", reference: ids.answering },
        ]);
        for (const [kind, invoice] of [
          ["heldFailed", held],
          ["behind", behind],
          ["answering", answered],
        ] as const)
          expect(
            running.logs.filter((line) => line.level === "warn" && line.fields.attemptId === ids[kind]),
          ).toEqual([
            expect.objectContaining({
              message: expect.stringMatching(
                /may be one of LND's payments: .*left in flight for an operator/,
              ),
              fields: expect.objectContaining({ paymentHashes: [invoice.id], paymentCount: 1 }),
            }),
          ]);
        expect(carol.asked).toEqual([]);
        // With no payment of LND's that may be its own, its address is asked and the invoice it answers paid.
        const fresh = await running.rail.execute(resumed("fresh"));
        expect(carol.asked).toHaveLength(1);
        expect(fresh).toMatchObject({
          status: "succeeded",
          evidence: { rail: "lightning", paymentHash: carol.asked[0] },
        });
      } finally {
        await running.rail.stop();
      }
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.mtokens === amounts.answering.toString())).toHaveLength(1);
    } finally {
      await carol.close();
    }
  });

  it("holds at most a quarter of its in-flight places for one tenant, across a restart: a hold invoice's payer pins its own, not another's", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_200 });
    const pinning = { ...bolt11(held.request, 1_200_000n, 10_000n), tenantId: "ten_holding" };
    const first = await startRail("tenant-share.jsonl", { inFlightMax: 4, executeWaitMs: 1_000 });
    const next = await createInvoice({ lnd: payee, tokens: 1_000 });
    const again = (tenantId: string) => ({ ...bolt11(next.request, 1_000_000n, 10_000n), tenantId });
    try {
      expect(await first.rail.execute(pinning)).toEqual({ status: "in_flight", reference: id });
      await waitFor(
        "HTLC held at the payee",
        async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // Before: the same tenant's next payment took another place, and so on until all four were its own.
      expect(await first.rail.execute(again("ten_holding"))).toMatchObject({
        status: "failed",
        code: "rail_unavailable",
        message: expect.stringMatching(/of this tenant/),
        retryElsewhere: true,
      });
    } finally {
      await first.rail.stop();
    }
    // Restarted, the rail follows the held payment again, still counted as its tenant's (the journal keeps it).
    const second = await startRail("tenant-share.jsonl", { inFlightMax: 4 });
    try {
      expect(await second.rail.execute(again("ten_holding"))).toMatchObject({
        status: "failed",
        code: "rail_unavailable",
        message: expect.stringMatching(/of this tenant/),
      });
      expect(await second.rail.execute(again("ten_beside"))).toMatchObject({ status: "succeeded" });
      await settleHodlInvoice({ lnd: payee, secret });
      await waitFor(
        "the held payment's success after the restart",
        async () => second.events.find((e) => e.kind === "attempt_succeeded" && e.attemptId === pinning.id),
        { timeoutMs: 30_000 },
      );
    } finally {
      await second.rail.stop();
    }
  });

  it("a payment whose journal cannot be written sends nothing, and leaves its invoice to the next attempt", async () => {
    const journal = createFileRailStore(path.join(directory, "unwritable.jsonl"));
    let refuseAttempts = true;
    const failing = await startRail({
      load: () => journal.load(),
      close: () => journal.close(),
      append: async (...records) => {
        if (refuseAttempts && records.some((record) => record.t === "attempt"))
          throw new Error("ENOSPC: no space left on device");
        await journal.append(...records);
      },
      held: () => journal.held(),
    });
    try {
      const invoice = await createInvoice({ lnd: payee, tokens: 1_313 });
      // Before: execute threw, and the invoice's hash stayed taken by an attempt nobody would send.
      expect(await failing.rail.execute(bolt11(invoice.request, 1_313_000n, 10_000n))).toMatchObject({
        status: "failed",
        code: "rail_unavailable",
        retryElsewhere: true,
      });
      expect((await getInvoice({ lnd: payee, id: invoice.id })).is_confirmed).toBe(false);
      refuseAttempts = false;
      expect(await failing.rail.execute(bolt11(invoice.request, 1_313_000n, 10_000n))).toMatchObject({
        status: "succeeded",
      });
      expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("1313000");
    } finally {
      await failing.rail.stop();
    }
  });

  it("offers itself to nobody while its journal is torn by a failed sync, says why in its health, and logs the tear once", async () => {
    let syncFails = false;
    const torn = await startRail(
      createFileRailStore(path.join(directory, "torn.jsonl"), {
        // Once syncFails, a disk that lost what was written: fdatasync reports EIO, and the journal is torn till a restart.
        sync: (descriptor) =>
          syncFails
            ? Promise.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }))
            : new Promise<void>((resolve, reject) =>
                fdatasync(descriptor, (error) => (error === null ? resolve() : reject(error))),
              ),
      }),
    );
    const tearLines = () => torn.logs.filter((line) => line.message.startsWith("journal torn"));
    try {
      await waitFor("the rail available", async () => (torn.rail.snapshot().available ? true : undefined), {
        timeoutMs: 10_000,
      });
      expect(torn.rail.snapshot()).not.toHaveProperty("unavailable");
      expect(torn.rail.health().lastError).toBeNull();
      expect(tearLines()).toEqual([]);
      syncFails = true;
      // The invoice's line not synced: refused as a rail unavailable, not thrown (a 500 at the API, before), and not
      // naming the journal's path to the API's caller.
      const refused = await torn.rail.receive({
        reference: "torn-journal",
        amount: 1_515_000n,
        description: "torn-journal",
        expirySeconds: 600,
      });
      expect(refused).toEqual({
        status: "refused",
        code: "rail_unavailable",
        message: "the invoice could not be journalled: journal sync failed",
      });
      // Torn now: refused before LND is asked for another.
      await expect(
        torn.rail.createInvoice({
          amountMsat: 1_515_000n,
          expirySeconds: 600,
          memo: "torn-journal-again",
          reference: "torn-journal-again",
        }),
      ).rejects.toMatchObject({ shortMessage: "journal torn by a failed write or sync" });
      // Before: still available, its health clear, every payout and invoice refused, and nothing said so.
      expect(torn.rail.snapshot().available).toBe(false);
      // Said to the health routes too, by the tear's code alone (a file system's error may name the journal's path).
      expect(torn.rail.snapshot().unavailable).toEqual({
        code: "journal_torn",
        message:
          "the journal refuses every write since a write, cut or sync failed (EIO); restart the gateway to reload it",
      });
      expect(torn.rail.health().lastError).toBe(
        "journal torn: EIO: i/o error, fdatasync; restart the gateway to reload the journal",
      );
      // A second look, and a tick of the monitor's, say nothing more.
      torn.rail.snapshot();
      torn.rail.health();
      await sleep(1_000);
      expect(torn.rail.snapshot().available).toBe(false);
      expect(tearLines()).toEqual([
        {
          level: "error",
          message: "journal torn: the rail refuses payouts and invoices until the gateway restarts",
          fields: { code: "EIO", error: "EIO: i/o error, fdatasync" },
        },
      ]);
    } finally {
      await torn.rail.stop();
    }
  });

  it("prepare writes an attempt's journal line ahead, and execute then sends it without a write of its own, once", async () => {
    const journal = path.join(directory, "prepared.jsonl");
    let syncs = 0;
    const prepared = await startRail(
      createFileRailStore(journal, {
        sync: async (descriptor) => {
          syncs += 1;
          await new Promise<void>((resolve, reject) =>
            fdatasync(descriptor, (error) => (error === null ? resolve() : reject(error))),
          );
        },
      }),
    );
    try {
      const invoice = await createInvoice({ lnd: payee, tokens: 1_414 });
      const attempt = bolt11(invoice.request, 1_414_000n, 10_000n);
      await prepared.rail.prepare!(attempt);
      // Durable once prepare resolves: the line a crash must not lose, before LND has seen anything.
      expect(syncs).toBe(1);
      expect(await journalAttemptLines(journal, attempt.id)).toEqual(["attempt"]);
      expect((await getInvoice({ lnd: payee, id: invoice.id })).is_confirmed).toBe(false);
      // Asked again (a repeat of the gateway's call), it writes nothing more.
      await prepared.rail.prepare!(attempt);
      const outcome = await prepared.rail.execute(attempt);
      expect(outcome).toMatchObject({ status: "succeeded", evidence: { paymentHash: invoice.id } });
      // Before: no prepare; execute wrote and synced the line itself, on the payment's path.
      expect(syncs).toBe(1);
      expect(await journalAttemptLines(journal, attempt.id)).toEqual(["attempt", "outcome", "reported"]);
      expect(await prepared.rail.execute(attempt)).toEqual(outcome);
      const { payments } = await getPayments({ lnd: client("gateway") });
      expect(payments.filter((payment) => payment.id === invoice.id)).toHaveLength(1);
    } finally {
      await prepared.rail.stop();
    }
  });

  it("withdraw forgets an attempt written ahead: its invoice is free, a restart does not follow it, its id pays afresh", async () => {
    const journal = "withdrawn.jsonl";
    const first = await startRail(journal);
    const invoice = await createInvoice({ lnd: payee, tokens: 1_515 });
    const attempt = bolt11(invoice.request, 1_515_000n, 10_000n);
    try {
      await first.rail.prepare!(attempt);
      await first.rail.withdraw!(attempt.id);
      await first.rail.withdraw!(attempt.id); // again: nothing more
      expect(await journalAttemptLines(path.join(directory, journal), attempt.id)).toEqual([
        "attempt",
        "withdrawn",
      ]);
    } finally {
      await first.rail.stop();
    }
    // Restarted on the journal: the attempt is not followed (before: LND never took it, so it was reported failed).
    const restarted = await startRail(journal);
    try {
      expect(await journalAttemptLines(path.join(directory, journal), attempt.id)).toEqual([]);
      expect(restarted.events.filter((e) => "attemptId" in e && e.attemptId === attempt.id)).toEqual([]);
      // The gateway may still execute the id (a reservation whose commit went unanswered was made after all).
      expect(await restarted.rail.execute(attempt)).toMatchObject({ status: "succeeded" });
      expect(restarted.events.filter((e) => "attemptId" in e && e.attemptId === attempt.id)).toEqual([]);
    } finally {
      await restarted.rail.stop();
    }
    expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("1515000");
  });

  it("an attempt of an invoice another one is written ahead for waits: it pays once that one is withdrawn, is refused once it is sent", async () => {
    // Withdrawn (its payment's reservation refused, say): the invoice is free for the attempt that waited.
    const invoice = await createInvoice({ lnd: payee, tokens: 1_717 });
    const withdrawn = bolt11(invoice.request, 1_717_000n, 10_000n);
    await main.rail.prepare!(withdrawn);
    let answered = false;
    const waiting = main.rail.execute(bolt11(invoice.request, 1_717_000n, 10_000n)).finally(() => {
      answered = true;
    });
    await sleep(300);
    // Before: refused at once ("another payment of this invoice is in flight"), for an attempt never sent.
    expect(answered).toBe(false);
    await main.rail.withdraw!(withdrawn.id);
    expect(await waiting).toMatchObject({ status: "succeeded" });
    expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("1717000");

    // Sent (its reservation made): the other is refused, and the invoice is paid once.
    const second = await createInvoice({ lnd: payee, tokens: 1_718 });
    const sent = bolt11(second.request, 1_718_000n, 10_000n);
    await main.rail.prepare!(sent);
    const refused = main.rail.execute(bolt11(second.request, 1_718_000n, 10_000n));
    await sleep(100);
    expect(await main.rail.execute(sent)).toMatchObject({ status: "succeeded" });
    expect(await refused).toMatchObject({ status: "failed", code: "rejected" });
    expect((await getInvoice({ lnd: payee, id: second.id })).received_mtokens).toBe("1718000");

    // The rail stopping ends the wait.
    const stopping = await startRail("undecided-stop.jsonl");
    try {
      const third = await createInvoice({ lnd: payee, tokens: 1_719 });
      await stopping.rail.prepare!(bolt11(third.request, 1_719_000n, 10_000n));
      const cut = stopping.rail.execute(bolt11(third.request, 1_719_000n, 10_000n));
      await sleep(100);
      await stopping.rail.stop();
      expect(await cut).toMatchObject({ status: "failed", code: "rail_unavailable" });
    } finally {
      await stopping.rail.stop(); // again if an assertion above threw first: a stopped rail stops at once
    }
  });

  it("withdraws an attempt written ahead that is never executed, after preparedWaitMs", async () => {
    const waiting = await startRail("prepared-expired.jsonl", { preparedWaitMs: 300 });
    try {
      const invoice = await createInvoice({ lnd: payee, tokens: 1_616 });
      const forgotten = bolt11(invoice.request, 1_616_000n, 10_000n);
      await waiting.rail.prepare!(forgotten);
      await waitFor(
        "the attempt withdrawn",
        async () =>
          waiting.logs.some((line) => /never executed: withdrawn/.test(line.message)) ? true : undefined,
        { timeoutMs: 10_000 },
      );
      expect(await waiting.rail.execute(bolt11(invoice.request, 1_616_000n, 10_000n))).toMatchObject({
        status: "succeeded",
      });
      expect(await journalAttemptLines(path.join(directory, "prepared-expired.jsonl"), forgotten.id)).toEqual(
        ["attempt", "withdrawn"],
      );
    } finally {
      await waiting.rail.stop();
    }
  });

  it("sends keysend once per attempt id (the preimage is derived from it)", async () => {
    const attempt: OutgoingAttempt = {
      id: attemptId("keysend"),
      paymentId: "payment-keysend",
      tenantId: "ten_test",
      amount: 1_000_000n,
      destination: { kind: "lightning_node", pubkey: cluster.nodes.payee.publicKey },
      feeMax: 10_000n,
    };
    const first = await main.rail.execute(attempt);
    expect(first.status).toBe("succeeded");
    if (first.status !== "succeeded" || first.evidence.rail !== "lightning") throw new Error("unreachable");
    expect(await main.rail.execute(attempt)).toEqual(first);
    const received = await getInvoice({ lnd: payee, id: first.evidence.paymentHash });
    expect(received.is_confirmed).toBe(true);
    expect(received.received_mtokens).toBe("1000000");
    // A rail whose journal lost the attempt follows the payment LND has of its hash: it is this attempt's own.
    const amnesic = await startRail("keysend-journal-lost.jsonl");
    try {
      expect(await amnesic.rail.execute(attempt)).toMatchObject({
        status: "succeeded",
        evidence: { preimage: first.evidence.preimage },
      });
    } finally {
      await amnesic.rail.stop();
    }

    const other = await main.rail.execute({ ...attempt, id: attemptId("keysend") });
    expect(
      other.status === "succeeded" && other.evidence.rail === "lightning" && other.evidence.paymentHash,
    ).not.toBe(first.evidence.paymentHash);
  });

  it("fails cleanly when the fee limit is below the route's fee, and leaves nothing in flight", async () => {
    // The gateway reaches the remote node only through the payee, who charges a routing fee (remoteHopFee: 7,000 msat
    // for 1,000 sat). Not the payer: once it has paid the gateway, their own channel carries the payment free.
    const invoice = await createInvoice({ lnd: client("remote"), tokens: 1_000 });
    const outcome = await main.rail.execute(bolt11(invoice.request, 1_000_000n, 0n));
    expect(outcome).toMatchObject({ status: "failed", code: "fee_above_max", retryElsewhere: true });
    const pending = await getPendingPayments({ lnd: client("gateway") });
    expect(pending.payments.filter((payment) => payment.id === invoice.id)).toHaveLength(0);

    const paid = await main.rail.execute(bolt11(invoice.request, 1_000_000n, 10_000n));
    expect(paid).toMatchObject({ status: "succeeded" });
    expect(paid.status === "succeeded" && paid.fee).toBeGreaterThan(0n);
  });

  it("fails an unreachable payee as unreachable_destination, retryable elsewhere", async () => {
    // A valid public key (the secp256k1 generator) that no node in this network has.
    const stranger = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    const outcome = await main.rail.execute({
      id: attemptId("stranger"),
      paymentId: "payment-stranger",
      tenantId: "ten_test",
      amount: 1_000n,
      destination: { kind: "lightning_node", pubkey: stranger },
      feeMax: 10_000n,
    });
    expect(outcome).toMatchObject({
      status: "failed",
      code: "unreachable_destination",
      retryElsewhere: true,
    });
  });

  it("fails an expired invoice as expired, not retryable elsewhere", async () => {
    const invoice = await createInvoice({
      lnd: payee,
      tokens: 1_000,
      expires_at: new Date(Date.now() + 1_000).toISOString(),
    });
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const outcome = await main.rail.execute(bolt11(invoice.request, 1_000_000n, 10_000n));
    expect(outcome).toMatchObject({ status: "failed", code: "expired", retryElsewhere: false });
  });

  it("an expired invoice the gateway's lnd paid by hand before is refused, never taken as the attempt's payment", async () => {
    const invoice = await createInvoice({
      lnd: payee,
      tokens: 1_313,
      expires_at: new Date(Date.now() + 3_000).toISOString(),
    });
    await pay({ lnd: client("gateway"), request: invoice.request });
    await sleep(3_500);
    // LND refuses the send: its invoice expired. Before: followed by the hash (and LND taken for disconnected), the
    // payment by hand was read as the attempt's own, and its payer charged for it.
    const outcome = await main.rail.execute(bolt11(invoice.request, 1_313_000n, 10_000n));
    expect(outcome).toMatchObject({ status: "failed", retryElsewhere: false });
    expect(["expired", "rejected"]).toContain(outcome.status === "failed" ? outcome.code : "");
  });

  it("resumes a payment in flight after the rail restarts, and settles it exactly once", async () => {
    const secret = randomBytes(32).toString("hex");
    const id = sha256(secret);
    const held = await createHodlInvoice({ lnd: payee, id, tokens: 3_000 });
    const first = await startRail("restart.jsonl", { executeWaitMs: 2_000 });
    const attempt = bolt11(held.request, 3_000_000n, 10_000n);
    expect(await first.rail.execute(attempt)).toEqual({ status: "in_flight", reference: id });
    await waitFor(
      "HTLC held at the payee",
      async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
      {
        timeoutMs: 30_000,
      },
    );
    await first.rail.stop();

    const second = await startRail("restart.jsonl", { executeWaitMs: 1_000 });
    expect(await second.rail.execute(attempt)).toEqual({ status: "in_flight", reference: id });
    await settleHodlInvoice({ lnd: payee, secret });
    const event = await waitFor(
      "attempt_succeeded after restart",
      async () => second.events.find((e) => e.kind === "attempt_succeeded" && e.attemptId === attempt.id),
      { timeoutMs: 30_000 },
    );
    expect(event).toEqual({
      kind: "attempt_succeeded",
      attemptId: attempt.id,
      evidence: { rail: "lightning", paymentHash: id, preimage: secret },
      fee: 0n,
    });
    expect(await second.rail.execute(attempt)).toMatchObject({
      status: "succeeded",
      evidence: { preimage: secret },
    });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(
      second.events.filter((e) => e.kind === "attempt_succeeded" && e.attemptId === attempt.id),
    ).toHaveLength(1);
    expect(first.events.filter((e) => e.kind !== "received")).toHaveLength(0);
    const { payments } = await getPayments({ lnd: client("gateway") });
    expect(payments.filter((payment) => payment.id === id)).toHaveLength(1);
    expect((await getInvoice({ lnd: payee, id })).received_mtokens).toBe("3000000");
    await second.rail.stop();

    // A third start finds nothing left to report.
    const third = await startRail("restart.jsonl");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(third.events.filter((e) => e.kind !== "received")).toHaveLength(0);
    await third.rail.stop();
  });

  it("after a restart, an attempt journalled but never sent does not take a payment of its invoice someone else made", async () => {
    // The node's operator pays two invoices by hand (nothing in any journal): one with an amount, one without.
    const priced = await createInvoice({ lnd: payee, tokens: 1_111 });
    const open = await createInvoice({ lnd: payee });
    await pay({ lnd: client("gateway"), request: priced.request });
    await pay({ lnd: client("gateway"), request: open.request, tokens: 1_000 });
    // A gateway then journals an attempt at each and stops before sending it (a crash between the two): the first
    // two minutes after the operator's payment (by the gateway's clock), the second at once, for another amount
    // than the operator paid.
    const late = journalledAttempt("unsent", priced, 1_111_000n, Date.now() + 120_000);
    const otherAmount = journalledAttempt("unsent", open, 2_000_000n);
    await writeFile(
      path.join(directory, "unsent.jsonl"),
      `${JSON.stringify(late)}\n${JSON.stringify(otherAmount)}\n`,
    );
    const restarted = await startRail("unsent.jsonl", { executeWaitMs: 1_000 });
    try {
      // Before: each was reported succeeded with the operator's preimage, and the gateway charged its payer.
      // Another amount proves the payment another's: the attempt fails, nothing of it having gone out.
      expect(
        await waitFor(
          "the outcome of the attempt for another amount",
          async () => restarted.events.find((e) => "attemptId" in e && e.attemptId === otherAmount.attemptId),
          { timeoutMs: 30_000 },
        ),
      ).toMatchObject({ kind: "attempt_failed", code: "rejected", retryElsewhere: false });
      // An earlier time proves it only as far as the clocks agree: neither outcome is booked, an operator decides.
      await waitFor(
        "the doubt logged",
        async () =>
          restarted.logs.some((line) => /may not be the attempt's/.test(line.message)) ? true : undefined,
        { timeoutMs: 30_000 },
      );
      const execute = {
        id: late.attemptId,
        paymentId: late.paymentId,
        tenantId: "ten_test",
        amount: 1_111_000n,
        destination: { kind: "bolt11" as const, invoice: priced.request },
        feeMax: 10_000n,
      };
      expect(await restarted.rail.execute(execute)).toEqual({ status: "in_flight", reference: priced.id });
      expect(restarted.events.filter((e) => "attemptId" in e && e.attemptId === late.attemptId)).toEqual([]);
    } finally {
      await restarted.rail.stop();
    }
    const { payments } = await getPayments({ lnd: client("gateway") });
    expect(payments.filter((payment) => payment.id === priced.id || payment.id === open.id)).toHaveLength(2);
  });

  it("after a restart, an attempt journalled that LND never took is forgotten: sent afresh by an execute, else never", async () => {
    const executed = await createInvoice({ lnd: payee, tokens: 1_212 });
    const left = await createInvoice({ lnd: payee, tokens: 1_313 });
    // A process wrote both lines and stopped before sending either (LND has neither hash).
    const resumed = journalledAttempt("never-taken", executed, 1_212_000n);
    const orphan = journalledAttempt("never-taken", left, 1_313_000n);
    const journal = path.join(directory, "never-taken.jsonl");
    await writeFile(journal, `${JSON.stringify(resumed)}\n${JSON.stringify(orphan)}\n`);
    const restarted = await startRail("never-taken.jsonl");
    try {
      // The gateway's recovery executes the one whose reservation it has, at once (while LND is asked about it, or
      // after): it goes out afresh. Before: both failed as rail_unavailable, this one's payment with it.
      expect(
        await restarted.rail.execute({
          ...bolt11(executed.request, 1_212_000n, 10_000n, resumed.attemptId),
          resumed: true,
        }),
      ).toMatchObject({ status: "succeeded" });
      await waitFor(
        "the orphan forgotten",
        async () =>
          (await journalAttemptLines(journal, orphan.attemptId)).includes("withdrawn") ? true : undefined,
        { timeoutMs: 30_000 },
      );
      // Nothing goes out for the other, and the gateway hears nothing of it.
      expect(restarted.events.filter((e) => "attemptId" in e)).toEqual([]);
      expect((await getInvoice({ lnd: payee, id: executed.id })).received_mtokens).toBe("1212000");
      expect((await getInvoice({ lnd: payee, id: left.id })).is_confirmed).toBe(false);
    } finally {
      await restarted.rail.stop();
    }
  });

  it("catches up by settle index on invoices settled while the rail was stopped", async () => {
    const running = await startRail("catch-up.jsonl");
    await payThrough(running.rail, "catch-up-before", 1_000_000n);
    await waitFor("first received", async () => running.events.find((e) => e.kind === "received"), {
      timeoutMs: 30_000,
    });
    const during = await running.rail.createInvoice({
      amountMsat: 2_000_000n,
      expirySeconds: 600,
      memo: "during",
      reference: "catch-up-during",
    });
    await running.rail.stop();
    await pay({ lnd: payer, request: during.request });
    const foreign = await createInvoice({ lnd: client("gateway"), tokens: 1_000 });
    await pay({ lnd: payer, request: foreign.request });

    const restarted = await startRail("catch-up.jsonl");
    const event = await waitFor(
      "received after restart",
      async () => restarted.events.find((e) => e.kind === "received" && e.reference === "catch-up-during"),
      { timeoutMs: 30_000 },
    );
    expect(event).toMatchObject({ amount: 2_000_000n, evidence: { paymentHash: during.paymentHash } });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const references = restarted.events.flatMap((e) => (e.kind === "received" ? [e.reference] : []));
    expect(references).toEqual(["catch-up-during"]);
    await restarted.rail.stop();
  });

  it("with no settle index yet, asks for its newest open invoices first: one paid while stopped is delivered", async () => {
    // A journal that never saw a settlement: LND cannot replay, so the rail asks for its open invoices, at most
    // openInvoicesCheckMax of them. The oldest (still open, unpaid) came first and the newest, paid, was never asked.
    // The newest by when it was made, not by when it expires: the old one expires later, and it was asked instead.
    const running = await startRail("newest-first.jsonl");
    await running.rail.createInvoice({
      amountMsat: 1_000_000n,
      expirySeconds: 7_200,
      memo: "old and unpaid",
      reference: "newest-first-old",
    });
    const paid = await running.rail.createInvoice({
      amountMsat: 2_000_000n,
      expirySeconds: 3_600,
      memo: "new and paid while away",
      reference: "newest-first-paid",
    });
    await running.rail.stop();
    await pay({ lnd: payer, request: paid.request });
    const restarted = await startRail("newest-first.jsonl", { openInvoicesCheckMax: 1 });
    try {
      const event = await waitFor(
        "the newest open invoice asked for",
        async () =>
          restarted.events.find((e) => e.kind === "received" && e.reference === "newest-first-paid"),
        { timeoutMs: 30_000 },
      );
      expect(event).toMatchObject({ amount: 2_000_000n, evidence: { paymentHash: paid.paymentHash } });
    } finally {
      await restarted.rail.stop();
    }
  });

  it("delivers an invoice paid while the rail was stopped past its expiry and a day, and forgets one never paid", async () => {
    const journal = path.join(directory, "long-away.jsonl");
    const running = await startRail("long-away.jsonl");
    await payThrough(running.rail, "long-away-before", 1_000_000n);
    await waitFor("first received", async () => running.events.find((e) => e.kind === "received"), {
      timeoutMs: 30_000,
    });
    const paid = await running.rail.createInvoice({
      amountMsat: 3_000_000n,
      expirySeconds: 600,
      memo: "paid while away",
      reference: "long-away-paid",
    });
    const unpaid = await running.rail.createInvoice({
      amountMsat: 1_000_000n,
      expirySeconds: 1,
      memo: "never paid",
      reference: "long-away-unpaid",
    });
    const unpaidToo = await running.rail.createInvoice({
      amountMsat: 1_000_000n,
      expirySeconds: 1,
      memo: "never paid either",
      reference: "long-away-unpaid-too",
    });
    await running.rail.stop();
    await pay({ lnd: payer, request: paid.request });
    await sleep(1_500); // LND's own expiry of the unpaid one
    // The rail comes back more than a day after both expired, as its journal says (LND's clock cannot be moved).
    const dayAndMoreAgo = Date.now() - 25 * 3600 * 1000;
    const lines = (await readFile(journal, "utf8")).split("\n").filter((line) => line !== "");
    const aged = lines.map((line) => {
      const record = JSON.parse(line) as { t: string };
      return `${JSON.stringify(record.t === "invoice" ? { ...record, expiresAtMs: dayAndMoreAgo } : record)}\n`;
    });
    await writeFile(journal, aged.join(""));
    // A start that stopped before it caught up: its load compacted the journal, and nothing else happened.
    const interrupted = createFileRailStore(journal);
    await interrupted.load();
    await interrupted.close();

    // One open invoice asked at start (the catch-up): the expired pass asks about the others.
    const restarted = await startRail("long-away.jsonl", { openInvoicesCheckMax: 1 });
    try {
      // Before: compaction forgot both by their age, and the settle index's replay took the paid one as not ours.
      const event = await waitFor(
        "received after a long stop",
        async () => restarted.events.find((e) => e.kind === "received" && e.reference === "long-away-paid"),
        { timeoutMs: 30_000 },
      );
      expect(event).toMatchObject({ amount: 3_000_000n, evidence: { paymentHash: paid.paymentHash } });
      // The never-paid one is forgotten once LND says so, and not before: its line is followed by invoice_done.
      for (const forgotten of [unpaid, unpaidToo]) await forgottenIn(journal, forgotten.paymentHash, 30_000);
      await sleep(1_000);
      expect(restarted.events.flatMap((e) => (e.kind === "received" ? [e.reference] : []))).toEqual([
        "long-away-paid",
      ]);
    } finally {
      await restarted.rail.stop();
    }
    // Neither is in the journal once it is compacted again.
    const again = await createFileRailStore(journal).load();
    expect([...again.invoices.keys()]).toEqual([]);
  });

  it("forgets an unpaid invoice once it has expired by the clocks' margin, not a day later: unpaid L402 challenges do not pile up in memory", async () => {
    const journal = path.join(directory, "short-margin.jsonl");
    const running = await startRail("short-margin.jsonl", {
      expiredInvoiceAskAfterMs: 500,
      expiredInvoicesCheckIntervalMs: 500,
    });
    try {
      const unpaid = await Promise.all(
        [1, 2, 3].map((n) =>
          running.rail.createInvoice({
            amountMsat: 1_000_000n,
            expirySeconds: 1,
            memo: `a challenge never paid ${n}`,
            reference: `short-margin-${n}`,
          }),
        ),
      );
      for (const invoice of unpaid) await forgottenIn(journal, invoice.paymentHash, 20_000);
      expect(running.events.filter((e) => e.kind === "received")).toEqual([]);
    } finally {
      await running.rail.stop();
    }
  });

  it("knows its invoices' fate only up to the first it holds unasked, and past an unpaid one once LND said it was never paid", async () => {
    const journal = path.join(directory, "known.jsonl");
    const running = await startRail("known.jsonl", {
      expiredInvoiceAskAfterMs: 4_000,
      expiredInvoicesCheckIntervalMs: 500,
      rpcTimeoutMs: 2_000,
    });
    try {
      const invoice = await running.rail.createInvoice({
        amountMsat: 1_000_000n,
        expirySeconds: 1,
        memo: "a challenge never paid",
        reference: "known-1",
      });
      // Expired, and past the margin for an invoice being made (rpcTimeoutMs), but LND not asked about it yet (4 s
      // after its expiry): the rail cannot say it was never paid, however late it is. Without the invoices it holds,
      // the point would be a second past its expiry here.
      await sleep(invoice.expiresAtMs + 3_000 - Date.now());
      expect(running.rail.invoicesKnownBeforeMs()).toBe(invoice.expiresAtMs);
      await forgottenIn(journal, invoice.paymentHash, 20_000);
      await waitFor(
        "the point moved past the forgotten invoice",
        async () => ((running.rail.invoicesKnownBeforeMs() ?? 0) > invoice.expiresAtMs ? true : undefined),
        { timeoutMs: 10_000 },
      );
      expect(running.events.filter((e) => e.kind === "received")).toEqual([]);
    } finally {
      await running.rail.stop();
    }
  });

  it("says no point up to which its invoices are known once another process took its journal over", async () => {
    const journal = path.join(directory, "taken-over.jsonl");
    const running = await startRail("taken-over.jsonl", {
      expiredInvoicesCheckIntervalMs: 500,
      rpcTimeoutMs: 2_000,
    });
    try {
      await waitFor("the point", async () => running.rail.invoicesKnownBeforeMs() ?? undefined, {
        timeoutMs: 20_000,
      });
      // Another host's process took the journal over, and this one goes on. Before: it still said its point, which
      // the gateway records every minute with the invoices it holds set aside, replacing the other's list: an invoice
      // only the other set aside was left out, and the prune deleted it (its payer paid, never credited).
      await afterTakenOverByAnotherHost(journal, () =>
        expect(running.rail.invoicesKnownBeforeMs()).toBeNull(),
      );
      await sleep(1_000); // the passes go on: the point stays unsaid
      expect(running.rail.invoicesKnownBeforeMs()).toBeNull();
    } finally {
      await running.rail.stop();
    }
  });

  it("asks LND about its long-expired invoices several at once, forgets them all in one pass, and knows their fate as it goes", async () => {
    const journal = path.join(directory, "expired-backlog.jsonl");
    const count = 48;
    const made = await startRail("expired-backlog.jsonl");
    const invoices = await Promise.all(
      Array.from({ length: count }, (_, n) =>
        made.rail.createInvoice({
          amountMsat: 1_000_000n,
          expirySeconds: 1,
          memo: `a challenge never paid ${n}`,
          reference: `expired-backlog-${n}`,
        }),
      ),
    );
    await made.rail.stop();
    await sleep(1_500); // LND's own expiry of them
    // Expired an hour ago, a second apart: all past the margin (expiredInvoiceAskAfterMs), asked by the pass at the
    // start, the only one while this runs (expiredInvoicesCheckIntervalMs: five minutes).
    const hourAgo = Date.now() - 3600 * 1000;
    const expiresAtMs = new Map(invoices.map((invoice, n) => [invoice.paymentHash, hourAgo + n * 1_000]));
    const lines = (await readFile(journal, "utf8")).split("\n").filter((line) => line !== "");
    const aged = lines.map((line) => {
      const record = JSON.parse(line) as { t: string; paymentHash: string };
      return `${JSON.stringify(record.t === "invoice" ? { ...record, expiresAtMs: expiresAtMs.get(record.paymentHash) } : record)}\n`;
    });
    await writeFile(journal, aged.join(""));

    // LND a round trip of delayMs away: each lookup is answered delayMs after it is asked, so two asked one after the
    // other are answered at least delayMs apart.
    const delayMs = 300;
    const way = await slowWayTo(cluster.nodes.gateway.socket, delayMs);
    const answeredAtMs = new Map<string, number>();
    let firstKnown: { answered: number; knownMs: number; unansweredExpiryMin: number } | undefined;
    let running: Running | undefined;
    let watching = true;
    // Watched from before the start, where the pass begins: when each is forgotten (its invoice_done line), and how
    // far the rail said it knew the first time it said so.
    const watched = waitFor(
      "every expired invoice forgotten",
      async () => {
        if (!watching) return false;
        const knownMs = running?.rail.invoicesKnownBeforeMs() ?? null;
        const text = await readFile(journal, "utf8");
        for (const hash of expiresAtMs.keys())
          if (!answeredAtMs.has(hash) && text.includes(`"invoice_done","paymentHash":"${hash}"`))
            answeredAtMs.set(hash, Date.now());
        if (knownMs !== null && firstKnown === undefined) {
          const unanswered = [...expiresAtMs].filter(([hash]) => !answeredAtMs.has(hash));
          firstKnown = {
            answered: answeredAtMs.size,
            knownMs,
            unansweredExpiryMin: Math.min(...unanswered.map(([, ms]) => ms)),
          };
        }
        return answeredAtMs.size === count ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    try {
      running = await startRail(
        "expired-backlog.jsonl",
        { openInvoicesCheckMax: 1 },
        { ...cluster.nodes.gateway, socket: way.socket },
      );
      expect(await watched).toBe(true);
      // Asked together, answered together: the most forgotten within half a round trip. Before: asked one by one, one
      // at a time (1), the pass taking count × delayMs.
      const times = [...answeredAtMs.values()].sort((a, b) => a - b);
      const together = Math.max(
        ...times.map((at) => times.filter((t) => t >= at && t < at + delayMs / 2).length),
      );
      expect(together).toBeGreaterThanOrEqual(4);
      // Said before the pass ended (before: only once it had), and never past an invoice not answered yet.
      expect(firstKnown?.answered).toBeLessThan(count);
      expect(firstKnown?.knownMs).toBeLessThanOrEqual(firstKnown?.unansweredExpiryMin ?? 0);
      await waitFor(
        "the point moved past the last forgotten",
        async () =>
          (running?.rail.invoicesKnownBeforeMs() ?? 0) > hourAgo + (count - 1) * 1_000 ? true : undefined,
        { timeoutMs: 10_000 },
      );
      expect(running.events.filter((e) => e.kind === "received")).toEqual([]);
    } finally {
      watching = false;
      await watched.catch(() => undefined);
      await running?.rail.stop();
      await way.close();
    }
  });

  it("handles a burst of settlements together: a failed handler runs again, each is delivered once, nothing replays after restart", async () => {
    const store = createFileRailStore(path.join(directory, "burst.jsonl"));
    const rail = createLightningRail({
      lnd: cluster.nodes.gateway,
      store,
      limits: { refreshIntervalMs: 500, eventRetryDelayMs: 50 },
    });
    const calls: string[] = [];
    const handled: string[] = [];
    let failed = false;
    rail.onEvent(async (event) => {
      if (event.kind !== "received") return;
      calls.push(event.reference);
      // The oldest is slow and one fails once: delivery must wait for both, in order, without losing either.
      if (event.reference === "burst-0") await new Promise((resolve) => setTimeout(resolve, 300));
      if (event.reference === "burst-2" && !failed) {
        failed = true;
        throw new Error("a transient failure");
      }
      handled.push(event.reference);
    });
    await rail.start();
    await Promise.all(Array.from({ length: 5 }, (_, i) => payThrough(rail, `burst-${i}`, 1_000n)));
    await waitFor("every settlement handled", async () => (handled.length >= 5 ? true : undefined), {
      timeoutMs: 30_000,
    });
    expect([...handled].sort()).toEqual(["burst-0", "burst-1", "burst-2", "burst-3", "burst-4"]);
    expect(calls.filter((reference) => reference === "burst-2")).toHaveLength(2);
    await rail.stop();

    // Restarted on the same journal: the settle index is past the burst, so only a new settlement comes.
    const restarted = await startRail("burst.jsonl");
    await payThrough(restarted.rail, "burst-after", 1_000n);
    await waitFor("the new settlement", async () => (restarted.events.length > 0 ? true : undefined), {
      timeoutMs: 30_000,
    });
    expect(restarted.events.map((e) => (e.kind === "received" ? e.reference : e.kind))).toEqual([
      "burst-after",
    ]);
    await restarted.rail.stop();
  });

  it("sets aside an event whose handler keeps failing while the rest are handled, and delivers it on a retry and after a restart", async () => {
    const journal = "set-aside.jsonl";
    const limits = {
      refreshIntervalMs: 200,
      eventRetryDelayMs: 50,
      eventAttemptsMax: 3,
      setAsideRetryMs: 1_000,
      // One handler at a time: the events behind a failing one wait for it (with more, only those past the window).
      eventsConcurrentMax: 1,
    };
    const failing = new Set(["poison-a", "poison-b"]);
    const handled: string[] = [];
    const logs: LogLine[] = [];
    const rail = createLightningRail({
      lnd: cluster.nodes.gateway,
      store: createFileRailStore(path.join(directory, journal)),
      limits,
      logger: recordingLogger({ lines: logs }).logger,
    });
    rail.onEvent(async (event) => {
      if (event.kind !== "received") return;
      if (failing.has(event.reference)) throw new Error(`${event.reference} cannot be applied`);
      handled.push(event.reference);
    });
    await rail.start();
    try {
      await payThrough(rail, "poison-a", 1_000n);
      await payThrough(rail, "poison-b", 1_000n);
      await Promise.all(["after-1", "after-2"].map((reference) => payThrough(rail, reference, 1_000n)));
      // Before: both settlements behind the failing ones waited for good, the handler retried every 50 ms.
      await waitFor(
        "the settlements behind the failing ones",
        async () => (handled.includes("after-1") && handled.includes("after-2") ? true : undefined),
        { timeoutMs: 30_000 },
      );
      expect(logs.some((line) => line.level === "error" && /set aside/.test(line.message))).toBe(true);
      // Applicable again: the retry (every second here) delivers it, once.
      failing.delete("poison-a");
      await waitFor("the retried settlement", async () => (handled.includes("poison-a") ? true : undefined), {
        timeoutMs: 30_000,
      });
      expect(handled.filter((reference) => reference === "poison-a")).toHaveLength(1);
      expect(handled).not.toContain("poison-b");
    } finally {
      await rail.stop();
    }

    // Restarted on the same journal, the settle index past all four: the one still set aside is asked of LND and
    // delivered; nothing else is replayed.
    const restarted = await startRail(journal, limits);
    try {
      await waitFor(
        "the settlement set aside before the restart",
        async () => (restarted.events.length > 0 ? true : undefined),
        { timeoutMs: 30_000 },
      );
      await sleep(1_500);
      expect(restarted.events.map((e) => (e.kind === "received" ? e.reference : e.kind))).toEqual([
        "poison-b",
      ]);
    } finally {
      await restarted.rail.stop();
    }
  });

  it("knows its invoices' fate past one set aside, listing it set aside until its settlement is delivered", async () => {
    const failing = new Set(["held-a"]);
    const handled: string[] = [];
    const logs: LogLine[] = [];
    const rail = createLightningRail({
      lnd: cluster.nodes.gateway,
      store: createFileRailStore(path.join(directory, "set-aside-known.jsonl")),
      limits: {
        refreshIntervalMs: 200,
        eventRetryDelayMs: 50,
        eventAttemptsMax: 3,
        // Tried again by the passes over expired invoices alone (every half second), not by the retry.
        setAsideRetryMs: 600_000,
        expiredInvoiceAskAfterMs: 1_000,
        expiredInvoicesCheckIntervalMs: 500,
        rpcTimeoutMs: 2_000,
      },
      logger: recordingLogger({ lines: logs }).logger,
    });
    rail.onEvent(async (event) => {
      if (event.kind !== "received") return;
      if (failing.has(event.reference)) throw new Error(`${event.reference} cannot be applied`);
      handled.push(event.reference);
    });
    await rail.start();
    try {
      // A is paid and its settlement refused again and again (set aside); B, made after it, is never paid.
      const a = await rail.createInvoice({
        amountMsat: 1_000n,
        expirySeconds: 3,
        memo: "a challenge paid, its settlement refused",
        reference: "held-a",
      });
      await pay({ lnd: payer, request: a.request });
      const b = await rail.createInvoice({
        amountMsat: 1_000n,
        expirySeconds: 3,
        memo: "a challenge never paid",
        reference: "held-b",
      });
      await waitFor(
        "the settlement set aside",
        async () =>
          logs.some((line) => line.level === "error" && /set aside/.test(line.message)) ? true : undefined,
        { timeoutMs: 30_000 },
      );
      // Once LND said B was never paid, the point moves past B, and past A, which is told apart by the list. Before, A
      // held it at its expiry for as long as it stayed set aside, and every unpaid invoice after it with it.
      await waitFor(
        "the point moved past the invoice set aside and the unpaid one after it",
        async () => ((rail.invoicesKnownBeforeMs() ?? 0) > b.expiresAtMs ? true : undefined),
        { timeoutMs: 20_000 },
      );
      expect(rail.invoicesKnownBeforeMs()).toBeGreaterThan(a.expiresAtMs);
      expect(rail.invoicesSetAside()).toEqual(["held-a"]);
      // Applicable again: a pass delivers it, and the rail lists it no more.
      failing.delete("held-a");
      await waitFor(
        "the settlement set aside delivered",
        async () => (handled.includes("held-a") ? true : undefined),
        {
          timeoutMs: 30_000,
        },
      );
      await waitFor(
        "the list emptied",
        async () => (rail.invoicesSetAside().length === 0 ? true : undefined),
        {
          timeoutMs: 5_000,
        },
      );
      expect(handled).toEqual(["held-a"]);
    } finally {
      await rail.stop();
    }
  });

  it("reconnects after the gateway's lnd restarts and catches up on invoices settled meanwhile", async () => {
    const invoice = await main.rail.createInvoice({
      amountMsat: 4_000_000n,
      expirySeconds: 600,
      memo: "across a restart",
      reference: "invoice-lnd-restart",
    });
    const receivedBefore = main.events.filter((e) => e.kind === "received").length;
    const logsBefore = main.logs.length;
    await control.stopNode("gateway");
    await waitFor("rail notices", async () => (main.rail.health().connected ? undefined : true), {
      timeoutMs: 30_000,
    });
    expect(main.rail.snapshot().available).toBe(false);
    // The loss is logged once, as a warning, through the logger the rail was given.
    const levelAndMessage = ({ level, message }: LogLine) => ({ level, message });
    const lost = main.logs
      .slice(logsBefore)
      .filter((line) => line.message === "LND connection lost")
      .map(levelAndMessage);
    expect(lost).toEqual([{ level: "warn", message: "LND connection lost" }]);
    await control.startNode("gateway");
    // Pay as soon as the payer's channel to the gateway is back, whether or not the rail has resubscribed.
    await waitFor(
      "payer's channel to the gateway active",
      async () => {
        const { channels } = await getChannels({ lnd: payer, is_active: true });
        return channels.some((channel) => channel.partner_public_key === cluster.nodes.gateway.publicKey)
          ? true
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await waitFor(
      "payment across the restart",
      async () => await pay({ lnd: payer, request: invoice.request }),
      {
        timeoutMs: 60_000,
        intervalMs: 500,
      },
    );
    const event = await waitFor(
      "received after lnd restart",
      async () => main.events.find((e) => e.kind === "received" && e.reference === "invoice-lnd-restart"),
      { timeoutMs: 60_000 },
    );
    expect(event).toMatchObject({ amount: 4_000_000n, evidence: { paymentHash: invoice.paymentHash } });
    await waitFor("rail healthy again", async () => (main.rail.snapshot().available ? true : undefined), {
      timeoutMs: 30_000,
    });
    expect(main.events.filter((e) => e.kind === "received")).toHaveLength(receivedBefore + 1);
    expect(main.logs.slice(logsBefore).map(levelAndMessage)).toContainEqual({
      level: "info",
      message: "LND connected",
    });

    // Outgoing works again too.
    const outgoing = await createInvoice({ lnd: payee, tokens: 500 });
    const paid = await waitFor(
      "payment out after restart",
      async () => {
        const outcome = await main.rail.execute(bolt11(outgoing.request, 500_000n, 10_000n));
        return outcome.status === "succeeded" ? outcome : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    expect(paid.status).toBe("succeeded");
  });
});

describe("the gateway's lnd stopped while a payout is in flight", () => {
  it("the payout is followed across the restart and ends as LND ends it, not failed on LND's shutdown", async () => {
    const running = await startRail("stopped-mid-payment.jsonl", { executeWaitMs: 120_000 });
    try {
      const secret = randomBytes(32).toString("hex");
      const id = sha256(secret);
      const held = await createHodlInvoice({ lnd: payee, id, tokens: 1_700 });
      const attempt = bolt11(held.request, 1_700_000n, 10_000n);
      const outcome = running.rail.execute(attempt);
      await waitFor(
        "HTLC held at the payee",
        async () => ((await getInvoice({ lnd: payee, id })).is_held ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // LND's stop ends the payment's stream ("routerrpc server shutting down"); LND keeps the payment.
      await control.stopNode("gateway");
      await control.startNode("gateway");
      await waitFor(
        "gateway's channel to the payee active",
        async () => {
          const { channels } = await getChannels({ lnd: client("gateway"), is_active: true });
          return channels.some((channel) => channel.partner_public_key === cluster.nodes.payee.publicKey)
            ? true
            : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      await settleHodlInvoice({ lnd: payee, secret });
      // Before: failed as rejected when the stream ended, the reservation voided, while LND went on and paid it.
      expect(await outcome).toMatchObject({ status: "succeeded", evidence: { preimage: secret } });
      expect((await getInvoice({ lnd: payee, id })).is_confirmed).toBe(true);
    } finally {
      await running.rail.stop();
    }
  }, 180_000);
});

/** A TCP way to the gateway's lnd that hands on what lnd sends delayMs after it came: a round trip of delayMs. */
async function slowWayTo(socket: string, delayMs: number) {
  const [host, port] = [
    socket.slice(0, socket.lastIndexOf(":")),
    Number(socket.slice(socket.lastIndexOf(":") + 1)),
  ];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    for (const end of [client, upstream]) {
      sockets.add(end);
      end.on("error", () => undefined);
      end.on("close", () => {
        sockets.delete(end);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    // Timers of one delay fire in the order they were set: the bytes keep their order.
    upstream.on("data", (chunk: Buffer) =>
      setTimeout(() => client.destroyed || client.write(chunk), delayMs),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as net.AddressInfo;
  return {
    socket: `127.0.0.1:${own}`,
    close: async () => {
      for (const end of sockets) end.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A TCP way to the gateway's lnd that refuses every connection until opened. */
async function gatedWayTo(socket: string) {
  const [host, port] = [
    socket.slice(0, socket.lastIndexOf(":")),
    Number(socket.slice(socket.lastIndexOf(":") + 1)),
  ];
  let open = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = net.connect(port, host);
    for (const end of [client, upstream]) {
      sockets.add(end);
      end.on("error", () => undefined);
      end.on("close", () => {
        sockets.delete(end);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as net.AddressInfo;
  return {
    socket: `127.0.0.1:${own}`,
    open: () => {
      open = true;
    },
    close: async () => {
      for (const end of sockets) end.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("two executes waiting on an attempt LND never took", () => {
  it("both end with the one send made afresh, neither told to retry elsewhere", async () => {
    const invoice = await createInvoice({ lnd: payee, tokens: 1_919 });
    const line = journalledAttempt("two-waiters", invoice, 1_919_000n);
    await writeFile(path.join(directory, "two-waiters.jsonl"), `${JSON.stringify(line)}\n`);
    // The rail starts while LND cannot be reached: both executes wait on the attempt it follows, until LND answers
    // it never took it.
    const way = await gatedWayTo(cluster.nodes.gateway.socket);
    let running: Running | undefined;
    try {
      running = await startRail(
        "two-waiters.jsonl",
        { executeWaitMs: 120_000, reconnectDelayMaxMs: 500 },
        { ...cluster.nodes.gateway, socket: way.socket },
      );
      const attempt = { ...bolt11(invoice.request, 1_919_000n, 10_000n, line.attemptId), resumed: true };
      const first = running.rail.execute(attempt);
      const second = running.rail.execute(attempt);
      way.open();
      // Before: the second heard the forgotten attempt's "LND never took the payment" (retry elsewhere) while the
      // first sent it afresh: its payment would have gone out on another rail too.
      const [a, b] = await Promise.all([first, second]);
      expect(a).toMatchObject({ status: "succeeded" });
      expect(b).toEqual(a);
      expect((await getInvoice({ lnd: payee, id: invoice.id })).received_mtokens).toBe("1919000");
    } finally {
      await running?.rail.stop();
      await way.close();
    }
  }, 180_000);
});
