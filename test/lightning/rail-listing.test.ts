// The Lightning rail's listing of LND's payments (send.ts paymentsMaybeOf) against the regtest network, for a Lightning
// Address attempt found never taken whose mark kept no invoice: LND's ListPayments held at a chosen call, or made to
// fail by a deadline already past. The hold only delays the real call to the real LND, and the failure is the real
// client's, so that the interleaving is the test's, not the clock's.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  authenticatedLndGrpc,
  cancelHodlInvoice,
  createHodlInvoice,
  createInvoice,
  getInvoice,
  pay,
  settleHodlInvoice,
} from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import {
  createFileRailStore,
  createLightningRail,
  type LightningRailParams,
} from "../../adapters/lightning/index.ts";
import { waitFor } from "../../scripts/lightning/index.ts";
import { latch } from "../support/latch.ts";
import { resumedToAddress } from "../support/lightning-journal.ts";
import { lnurlServer } from "../support/lnurl-server.ts";
import { type LogLine, recordingLogger } from "../support/recording-logger.ts";

/**
 * The next ListPayments waits for `released` (once), `entered` called when it comes; `fail`: it then fails. `failing`:
 * how many calls after it fail. `requests`: what each call asked.
 */
const listing = vi.hoisted(() => ({
  next: null as null | { entered: () => void; released: Promise<void>; fail: boolean },
  failing: 0,
  requests: [] as unknown[],
}));

type ListPayments = (
  request: unknown,
  options: { deadline: number },
  callback: (error: unknown, response: unknown) => void,
) => void;

vi.mock("lightning", async (importOriginal) => {
  const actual = await importOriginal<typeof import("lightning")>();
  return {
    ...actual,
    authenticatedLndGrpc: (args: Parameters<typeof actual.authenticatedLndGrpc>[0]) => {
      const authenticated = actual.authenticatedLndGrpc(args);
      const client = authenticated.lnd.default as unknown as { listPayments: ListPayments };
      const listPayments = client.listPayments.bind(client);
      client.listPayments = (request, options, callback) => {
        listing.requests.push(request);
        const held = listing.next;
        listing.next = null;
        void (async () => {
          if (held !== null) {
            held.entered();
            await held.released;
          }
          let fail = held?.fail === true;
          if (!fail && listing.failing > 0) {
            listing.failing -= 1;
            fail = true;
          }
          // A deadline already past: the real call fails as one LND does not answer in time does.
          listPayments(request, fail ? { ...options, deadline: Date.now() - 1 } : options, callback);
        })();
      };
      return authenticated;
    },
  };
});

const cluster = inject("lightningCluster");
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
const gateway = authenticatedLndGrpc(cluster.nodes.gateway).lnd;

let directory = "";

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-listing-test-"));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** `promise`, or a failure naming `what` once `ms` pass without it. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not come within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A rail on a journal of marks journalled before they kept what their attempts sent (no hash, no invoice), or of
 * `marks` as given.
 */
async function railWithUnmarked(
  name: string,
  ids: readonly string[],
  lnurlFetch: LightningRailParams["lnurlFetch"],
  marks: readonly object[] = ids.map((id) => ({
    t: "withdrawn",
    attemptId: id,
    sent: true,
    createdAtMs: Date.now(),
  })),
) {
  const journal = path.join(directory, `${name}.jsonl`);
  await writeFile(journal, marks.map((mark) => `${JSON.stringify(mark)}\n`).join(""));
  const logs: LogLine[] = [];
  const rail = createLightningRail({
    lnd: cluster.nodes.gateway,
    store: createFileRailStore(journal),
    lnurlFetch,
    // A held listing is answered within rpcTimeoutMs (15 s by default), which another execute's payment may outlast on
    // a loaded machine: timed out, it fails where the test means it to pass.
    limits: {
      refreshIntervalMs: 500,
      reconnectDelayMaxMs: 1_000,
      executeWaitMs: 30_000,
      rpcTimeoutMs: 120_000,
      lnurlHttpHosts: ["127.0.0.1"],
    },
    logger: recordingLogger({ lines: logs }).logger,
  });
  await rail.start();
  return { rail, logs };
}

/** The journal's line of a BOLT11 attempt of `amount` to `invoice`, as the rail writes one. */
const attemptLine = (
  attemptId: string,
  invoice: { id: string; request: string },
  amount: bigint,
  createdAtMs: number,
) => ({
  t: "attempt",
  attemptId,
  paymentId: `payment-${attemptId}`,
  paymentHash: invoice.id,
  kind: "bolt11",
  amountMsat: amount.toString(),
  createdAtMs,
  feeMaxMsat: "10000",
  destination: null,
  request: invoice.request,
});

/**
 * The marks of two attempts of `amount`, written at `createdAtMs`: the other's, which succeeded with LND's payment
 * `paid` of its invoice, reported; then this one's mark, edited to name the other's invoice (read as a mark that kept
 * neither, the other's hash among its earlier ones), and its attempt line of its own invoice.
 */
function marksNamingAnothers(
  amount: bigint,
  createdAtMs: number,
  own: { attemptId: string; invoice: { id: string; request: string } },
  other: {
    attemptId: string;
    invoice: { id: string; request: string };
    paid: { secret: string; fee_mtokens: string };
  },
) {
  return [
    attemptLine(other.attemptId, other.invoice, amount, createdAtMs),
    {
      t: "outcome",
      attemptId: other.attemptId,
      status: "succeeded",
      preimage: other.paid.secret,
      feeMsat: other.paid.fee_mtokens,
    },
    { t: "reported", attemptId: other.attemptId },
    {
      t: "withdrawn",
      attemptId: own.attemptId,
      sent: true,
      createdAtMs,
      paymentHash: own.invoice.id,
      request: other.invoice.request,
    },
    attemptLine(own.attemptId, own.invoice, amount, createdAtMs),
  ];
}

describe("LND's payments listed for an attempt found never taken whose mark kept no invoice", () => {
  it("an execute whose listing another execute of the same id overtook (it asked the address and paid) answers that one's outcome, the address asked once, whether its listing then fails or answers", async () => {
    const carol = await lnurlServer(payee, "carol");
    // Amounts no other payment of the gateway's node has: each listing finds only what this test paid.
    const cases = [
      { fail: true, amount: 2_345_901n },
      { fail: false, amount: 2_345_902n },
    ];
    const ids = cases.map(() => `listing-overtaken-${randomUUID()}`);
    const { rail, logs } = await railWithUnmarked("overtaken", ids, carol.lnurlFetch);
    let release = () => {};
    try {
      for (const [index, { fail, amount }] of cases.entries()) {
        const id = ids[index] as string;
        const asked = carol.asked.length;
        const entered = latch();
        const released = latch();
        release = released.release;
        listing.next = { entered: entered.release, released: released.done, fail };
        // The first execute's listing is held; the second's finds no payment of its amount, asks the address and pays.
        const first = rail.execute(resumedToAddress(id, amount, carol.address));
        // An execute that lists nothing (a regression) would hold the test until its timeout, its finally never run.
        await within(entered.done, 10_000, "the first execute's listing of LND's payments");
        const second = await rail.execute(resumedToAddress(id, amount, carol.address));
        expect(second).toMatchObject({ status: "succeeded" });
        released.release();
        // Before (markChanged taken out): a listing that failed left it in flight, "could not be judged"; one that
        // answered (the second's payment, succeeded, not the attempt's maybe) asked the address for another invoice.
        expect(await first).toEqual(second);
        expect(carol.asked.length - asked).toBe(1);
        expect(logs.filter((line) => line.level === "warn" && line.fields.attemptId === id)).toEqual([]);
      }
    } finally {
      // Nothing held, armed or failing is left for the next test's listings.
      release();
      listing.next = null;
      listing.failing = 0;
      await rail.stop();
      await carol.close();
    }
  });

  it("an attempt whose listing fails is left in flight, said once however often it is asked, its address not asked; listed, the payments' routes are not asked for", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amount = 2_345_903n;
    const id = `listing-failed-${randomUUID()}`;
    const { rail, logs } = await railWithUnmarked("failed", [id], carol.lnurlFetch);
    try {
      listing.failing = 2;
      for (let pass = 0; pass < 2; pass += 1)
        expect(await rail.execute(resumedToAddress(id, amount, carol.address))).toEqual({
          status: "in_flight",
          reference: id,
        });
      expect(listing.failing).toBe(0);
      // Before (sayOnce's "unlisted" taken out): said at every pass, as often as a recovery pass asks.
      expect(logs.filter((line) => line.level === "warn" && line.fields.attemptId === id)).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(/could not be judged, LND's payments not listed: left in flight/),
        }),
      ]);
      expect(carol.asked).toEqual([]);
      // Listed now: none of its amount, its address asked, and it pays.
      listing.requests.length = 0;
      expect(await rail.execute(resumedToAddress(id, amount, carol.address))).toMatchObject({
        status: "succeeded",
      });
      expect(carol.asked).toHaveLength(1);
    } finally {
      await rail.stop();
      await carol.close();
    }
    // Asked without the payments' routes, which the rail never reads: else a listing of an hour of LND's payments carries
    // every hop of every part of each. Only LND's SQL payments store leaves them out (this network's bbolt one, lnd
    // 0.21.2, sends them all the same), so what is pinned is what the rail asks.
    expect(listing.requests).toEqual([
      expect.objectContaining({ include_incomplete: true, omit_hops: true }),
    ]);
  });

  it("a mark whose invoice is not of its hash (a line edited) stops its attempt alone: the rail starts and says it by its line, the attempt held while LND has a payment of its amount, its address not asked", async () => {
    const carol = await lnurlServer(payee, "carol");
    const amount = 2_345_904n;
    const id = `listing-mismatched-${randomUUID()}`;
    const named = "ab".repeat(32);
    // The gateway's node paid the invoice the line names: which of its two hashes the attempt sent is unknown.
    const invoice = await createInvoice({ lnd: payee, mtokens: amount.toString() });
    await pay({ lnd: gateway, request: invoice.request });
    const marks = [
      {
        t: "withdrawn",
        attemptId: id,
        sent: true,
        createdAtMs: Date.now(),
        paymentHash: named,
        request: invoice.request,
      },
      // Before, refused as corrupt: followed by another line, the journal was unreadable and the rail did not start
      // (the gateway with it); last, it was dropped as a torn line, and the attempt's address asked and paid again.
      { t: "withdrawn", attemptId: `listing-other-${randomUUID()}`, sent: true, createdAtMs: Date.now() },
    ];
    const { rail, logs } = await railWithUnmarked("mismatched", [], carol.lnurlFetch, marks);
    try {
      expect(logs.filter((line) => line.level === "warn" && typeof line.fields.details === "string")).toEqual(
        [
          expect.objectContaining({
            message: expect.stringMatching(/a withdrawn line's invoice is not one of its payment hash/),
            fields: {
              details: expect.stringMatching(
                new RegExp(`mismatched\\.jsonl:1: ${id}: ${named}: the invoice's is ${invoice.id}$`),
              ),
            },
          }),
        ],
      );
      expect(await rail.execute(resumedToAddress(id, amount, carol.address))).toEqual({
        status: "in_flight",
        reference: id,
      });
      expect(carol.asked).toEqual([]);
    } finally {
      await rail.stop();
      await carol.close();
    }
  });

  it("a mark whose invoice is another attempt's, which LND paid, leaves its attempt in flight for an operator when its own payment fails: that payment is not booked as its too", async () => {
    const amount = 2_345_917n;
    const createdAtMs = Date.now();
    const [ownId, otherId] = ["own", "other"].map((name) => `listing-held-${name}-${randomUUID()}`) as [
      string,
      string,
    ];
    // The other attempt's invoice, paid by the gateway's node after this attempt's first line; this attempt's own, its
    // payment failed (the payee cancelled it).
    const [other, own] = [
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
    ];
    const paid = await pay({ lnd: gateway, request: other.request });
    await cancelHodlInvoice({ lnd: payee, id: own.id });
    await expect(pay({ lnd: gateway, request: own.request })).rejects.toBeDefined();
    const marks = marksNamingAnothers(
      amount,
      createdAtMs,
      { attemptId: ownId, invoice: own },
      {
        attemptId: otherId,
        invoice: other,
        paid,
      },
    );
    const { rail, logs } = await railWithUnmarked("held", [], undefined, marks);
    const said = () => logs.filter((line) => line.fields.attemptId === ownId && line.level !== "info");
    try {
      // Followed at start, its own payment failed: LND is asked about the other's hash, which it paid.
      await waitFor(
        "the attempt's end beside the other's payment",
        async () => (said().length > 0 ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // Before: it succeeded with the other's payment ("LND paid an earlier invoice of it: it succeeds with that one"),
      // journalled under the other's hash, one payment of LND's booked for both.
      expect(said()).toEqual([
        expect.objectContaining({
          level: "error",
          message: expect.stringMatching(
            /another attempt of the rail holds its hash: left in flight for an operator$/,
          ),
          fields: expect.objectContaining({ earlierHash: other.id, heldBy: otherId, status: "failed" }),
        }),
      ]);
    } finally {
      await rail.stop();
    }
    const lines = (await readFile(path.join(directory, "held.jsonl"), "utf8"))
      .split("\n")
      .filter((text) => text !== "")
      .map((text) => JSON.parse(text));
    expect(lines.filter((line) => line.attemptId === ownId && line.t === "outcome")).toEqual([]);
    expect(lines.filter((line) => line.paymentHash === other.id && line.t === "attempt")).toEqual([
      expect.objectContaining({ attemptId: otherId }),
    ]);
  });

  it("a mark whose invoice is another attempt's, which LND paid, lets its attempt succeed with its own payment without a false payee-paid-twice error: that payment is the other's, booked there", async () => {
    const amount = 2_345_918n;
    const createdAtMs = Date.now();
    const [ownId, otherId] = ["own", "other"].map((name) => `listing-held-paid-${name}-${randomUUID()}`) as [
      string,
      string,
    ];
    // The other attempt's invoice and this attempt's own, both paid by the gateway's node.
    const [other, own] = [
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
    ];
    const paidOther = await pay({ lnd: gateway, request: other.request });
    const paidOwn = await pay({ lnd: gateway, request: own.request });
    const marks = marksNamingAnothers(
      amount,
      createdAtMs,
      { attemptId: ownId, invoice: own },
      {
        attemptId: otherId,
        invoice: other,
        paid: paidOther,
      },
    );
    const { rail, logs } = await railWithUnmarked("held-paid", [], undefined, marks);
    const journal = path.join(directory, "held-paid.jsonl");
    const outcomes = async () =>
      (await readFile(journal, "utf8"))
        .split("\n")
        .filter((text) => text !== "")
        .map((text) => JSON.parse(text))
        .filter((line) => line.attemptId === ownId && line.t === "outcome");
    try {
      // Followed at start, its own payment succeeded: it ends with it.
      await waitFor("the attempt's outcome", async () => ((await outcomes()).length > 0 ? true : undefined), {
        timeoutMs: 30_000,
      });
    } finally {
      await rail.stop();
    }
    expect(await outcomes()).toEqual([
      expect.objectContaining({
        status: "succeeded",
        preimage: paidOwn.secret,
        feeMsat: paidOwn.fee_mtokens,
      }),
    ]);
    // Before: "its payee was paid twice, the earlier payment unbooked", an error that sent an operator hunting for a
    // payment the other attempt booked.
    expect(logs.filter((line) => line.fields.attemptId === ownId && line.level !== "info")).toEqual([]);
  });

  it("a mark whose invoice is another attempt's, admitted and not sent yet, still asks LND about it when its own payment succeeds: that one, withdrawn, never would", async () => {
    const amount = 2_345_919n;
    const createdAtMs = Date.now();
    const ownId = `listing-unsent-own-${randomUUID()}`;
    // The other attempt's invoice, which LND paid (by hand here, as a slow LND registers a send late).
    const other = await createInvoice({ lnd: payee, mtokens: amount.toString() });
    await pay({ lnd: gateway, request: other.request });
    // This attempt's own payment, held at the payee until the other attempt is admitted.
    const secret = randomBytes(32).toString("hex");
    const own = await createHodlInvoice({
      lnd: payee,
      id: createHash("sha256").update(Buffer.from(secret, "hex")).digest("hex"),
      mtokens: amount.toString(),
    });
    const paying = pay({ lnd: gateway, request: own.request });
    await waitFor(
      "a payment held at the payee",
      async () => ((await getInvoice({ lnd: payee, id: own.id })).is_held ? true : undefined),
      { timeoutMs: 30_000 },
    );
    const marks = [
      // Edited to name the other's invoice: read as a mark that kept neither, the other's hash among its earlier ones.
      {
        t: "withdrawn",
        attemptId: ownId,
        sent: true,
        createdAtMs,
        paymentHash: own.id,
        request: other.request,
      },
      attemptLine(ownId, own, amount, createdAtMs),
    ];
    const { rail, logs } = await railWithUnmarked("unsent-holder", [], undefined, marks);
    const otherId = `listing-unsent-other-${randomUUID()}`;
    try {
      await rail.prepare!({
        id: otherId,
        paymentId: `payment-${otherId}`,
        tenantId: "ten_test",
        amount,
        destination: { kind: "bolt11", invoice: other.request },
        feeMax: 10_000n,
      });
      await settleHodlInvoice({ lnd: payee, secret });
      await paying;
      await waitFor(
        "the attempt's error",
        async () =>
          logs.some((line) => line.fields.attemptId === ownId && line.level === "error") ? true : undefined,
        { timeoutMs: 30_000 },
      );
      await rail.withdraw!(otherId);
    } finally {
      await rail.stop();
    }
    // Before: not asked, the other attempt admitted and not sent taken for one that booked LND's payment; withdrawn,
    // nothing said of that payment.
    expect(logs.filter((line) => line.fields.attemptId === ownId && line.level === "error")).toEqual([
      expect.objectContaining({
        message: expect.stringMatching(/paid twice/),
        fields: expect.objectContaining({
          earlierHash: other.id,
          earlierPending: false,
          status: "succeeded",
        }),
      }),
    ]);
  });
});
