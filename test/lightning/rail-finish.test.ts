// The Lightning rail's finish against the regtest network, with LND's GetPayment held at a chosen call: what an
// outcome that resumes after the rail stopped and started again (its state reloaded meanwhile) may write. The hold only
// delays the real call to the real LND, so that the interleaving is the test's, not the clock's.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { authenticatedLndGrpc, createInvoice, pay } from "lightning";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { createFileRailStore, createLightningRail } from "../../adapters/lightning/index.ts";
import type { RailEvent } from "../../core/index.ts";
import { waitFor } from "../../scripts/lightning/index.ts";
import { latch } from "../support/latch.ts";
import { type LogLine, recordingLogger } from "../support/recording-logger.ts";

/**
 * The next GetPayment of `hash` waits for `released` (once); `entered` is called when it comes, `answered` after LND's
 * answer.
 */
const hold = vi.hoisted(() => ({
  next: null as null | { hash: string; entered: () => void; released: Promise<void>; answered: () => void },
}));

vi.mock("lightning", async (importOriginal) => {
  const actual = await importOriginal<typeof import("lightning")>();
  return {
    ...actual,
    getPayment: async (args: Parameters<typeof actual.getPayment>[0]) => {
      const held = hold.next;
      if (held === null || held.hash !== args.id) return await actual.getPayment(args);
      hold.next = null;
      held.entered();
      await held.released;
      try {
        return await actual.getPayment(args);
      } finally {
        setImmediate(held.answered);
      }
    },
  };
});

const cluster = inject("lightningCluster");
const payee = authenticatedLndGrpc(cluster.nodes.payee).lnd;
const gateway = authenticatedLndGrpc(cluster.nodes.gateway).lnd;

let directory = "";

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "switchyard-lightning-finish-test-"));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe("an attempt's finish that resumes after the rail stopped and started again", () => {
  it("writes nothing over the reloaded state: the attempt followed again ends once, its mark and tracker the reloaded ones'", async () => {
    // A Lightning Address attempt whose mark replaced its first invoice (unpaid) by a second, sent and paid: its
    // outcome asks LND about the first before it is written (send.ts endsBesideEarlier).
    const amount = 2_350_000n;
    const [first, second] = [
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
      await createInvoice({ lnd: payee, mtokens: amount.toString() }),
    ];
    const attemptId = `finish-reloaded-${Date.now()}`;
    const journal = path.join(directory, "finish-reloaded.jsonl");
    const createdAtMs = Date.now();
    await writeFile(
      journal,
      [
        {
          t: "withdrawn",
          attemptId,
          sent: true,
          createdAtMs,
          paymentHash: second.id,
          request: second.request,
          earlierHashes: [first.id],
        },
        {
          t: "attempt",
          attemptId,
          paymentId: `payment-${attemptId}`,
          paymentHash: second.id,
          kind: "bolt11",
          amountMsat: amount.toString(),
          createdAtMs,
          feeMaxMsat: "10000",
          destination: null,
          request: second.request,
        },
      ]
        .map((record) => `${JSON.stringify(record)}\n`)
        .join(""),
    );
    const paid = await pay({ lnd: gateway, request: second.request });
    let entered = false;
    const released = latch();
    const answered = latch();
    hold.next = {
      hash: first.id,
      entered: () => {
        entered = true;
      },
      released: released.done,
      answered: answered.release,
    };
    const events: RailEvent[] = [];
    const logs: LogLine[] = [];
    const rail = createLightningRail({
      lnd: cluster.nodes.gateway,
      store: createFileRailStore(journal),
      // The held call runs within rpcTimeoutMs (15 s by default), which the hold (a stop, a start and the reloaded
      // attempt's finish) may outlast on a loaded machine: timed out, the finish returns before the guard is reached.
      limits: { refreshIntervalMs: 500, reconnectDelayMaxMs: 1_000, rpcTimeoutMs: 120_000 },
      logger: recordingLogger({ lines: logs }).logger,
    });
    rail.onEvent(async (event) => {
      events.push(event);
    });
    const own = () => events.filter((event) => "attemptId" in event && event.attemptId === attemptId);
    try {
      // Followed after the start, its payment succeeded: its finish asks LND about the first invoice, held there.
      await rail.start();
      await waitFor(
        "the finish's GetPayment of the first invoice (held)",
        async () => (entered ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // Meanwhile the rail stops and starts again: its state reloaded, the attempt followed afresh and ended.
      await rail.stop();
      await rail.start();
      await waitFor("the reloaded attempt's outcome", async () => (own().length > 0 ? true : undefined), {
        timeoutMs: 30_000,
      });
      // Then the first finish has LND's answer (no payment of the first invoice). Before: it took its tracker for the
      // attempt's, wrote its outcome into the reopened journal a second time and emitted it again (and, had it come
      // first, deleted the reloaded mark and tracker under the reloaded attempt's finish).
      released.release();
      await answered.done;
      await sleep(1_000);
      // The held call was answered, not timed out: timed out, the finish returns before the guard (LND not asked, its
      // payment followed again), and this test would pass without it.
      expect(
        logs.filter(
          (line) =>
            line.fields.attemptId === attemptId &&
            line.message.startsWith("LND was not asked about the earlier invoices"),
        ),
      ).toEqual([]);
      expect(own()).toEqual([
        {
          kind: "attempt_succeeded",
          attemptId,
          evidence: { rail: "lightning", paymentHash: second.id, preimage: paid.secret },
          fee: BigInt(paid.fee_mtokens),
        },
      ]);
    } finally {
      released.release();
      await rail.stop();
    }
    const outcomes = (await readFile(journal, "utf8"))
      .split("\n")
      .filter((text) => text !== "")
      .map((text) => JSON.parse(text))
      .filter((line) => line.t === "outcome" && line.attemptId === attemptId);
    expect(outcomes).toEqual([
      { t: "outcome", attemptId, status: "succeeded", preimage: paid.secret, feeMsat: paid.fee_mtokens },
    ]);
    expect(logs.filter((line) => line.level === "error")).toEqual([]);
  });
});
