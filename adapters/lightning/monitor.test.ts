// The rail's snapshot over a journal it may no longer write, or an LND it cannot use: the router must not route to it,
// and the health routes say why.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { assets, type Logger } from "../../core/index.ts";
import { afterTakenOverByAnotherHost } from "../../test/support/lightning-journal.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { snapshot } from "./monitor.ts";
import { type LightningRailState, lightningRailLimitsDefault } from "./state.ts";
import { createFileRailStore, createMemoryRailStore, type LightningRailStore } from "./store.ts";

/** What snapshot reads of a rail, running with LND connected and synced unless `overrides` says otherwise. */
const stateOver = (
  store: LightningRailStore,
  logger: Logger = recordingLogger().logger,
  overrides: { running?: boolean; connected?: boolean; syncedToChain?: boolean; checkedAtMs?: number } = {},
) =>
  ({
    id: "lightning",
    asset: assets.BTC,
    running: overrides.running ?? true,
    health: {
      connected: overrides.connected ?? true,
      syncedToChain: overrides.syncedToChain ?? true,
      checkedAtMs: overrides.checkedAtMs ?? 1,
    },
    store,
    limits: lightningRailLimitsDefault,
    recent: [],
    probeEstimate: null,
    liquidity: null,
    usdRate: () => ({ microUsd: 1n, perMinorUnits: 1n }),
    now: () => 0,
    logger,
    tearSaid: null,
    lockLostSaid: false,
  }) as unknown as LightningRailState;

const state = (held: boolean) => stateOver({ ...createMemoryRailStore(), held: () => held });

describe("the Lightning rail's snapshot", () => {
  it("is unavailable once another process took the journal over: every write is refused", () => {
    expect(snapshot(state(true)).available).toBe(true);
    // Before: available, and every payout routed to it refused.
    expect(snapshot(state(false)).available).toBe(false);
  });

  it("says why it is unavailable, the journal before LND, and nothing while it is available", () => {
    const store = createMemoryRailStore();
    const unavailable = (overrides: Parameters<typeof stateOver>[2]) =>
      snapshot(stateOver(store, undefined, overrides)).unavailable;
    expect(snapshot(stateOver(store))).not.toHaveProperty("unavailable");
    expect(unavailable({ running: false, connected: false })).toEqual({
      code: "not_started",
      message: "the Lightning rail is not started",
    });
    // Started, its first check of LND not answered yet: starting, not unreachable.
    expect(unavailable({ connected: false, syncedToChain: false, checkedAtMs: 0 })).toEqual({
      code: "not_started",
      message: "the Lightning rail is starting",
    });
    expect(unavailable({ connected: false, syncedToChain: false })).toEqual({
      code: "node_unreachable",
      message: "LND did not answer the rail's last check; the rail reconnects",
    });
    expect(unavailable({ syncedToChain: false })).toEqual({
      code: "node_not_synced",
      message: "LND is not synced to its chain",
    });
    const tear = Object.assign(new Error("EIO: i/o error, fdatasync /var/lib/switchyard/journal.jsonl"), {
      code: "EIO",
    });
    const torn = snapshot(
      stateOver({ ...store, held: () => false, torn: () => tear }, undefined, { connected: false }),
    );
    // The tear's code, not its text: a file system's error may name the journal's path.
    expect([torn.available, torn.unavailable]).toEqual([
      false,
      {
        code: "journal_torn",
        message:
          "the journal refuses every write since a write, cut or sync failed (EIO); restart the gateway to reload it",
      },
    ]);
  });

  it("says the journal's lock is lost once another process took it over, and logs it once at error, naming the lock", async () => {
    const directory = await mkdtemp(path.join(os.tmpdir(), "lightning-monitor-"));
    const file = path.join(directory, "lost.jsonl");
    const store = createFileRailStore(file);
    const { logger, lines } = recordingLogger();
    try {
      await store.load();
      const s = stateOver(store, logger);
      expect(snapshot(s)).not.toHaveProperty("unavailable");
      await afterTakenOverByAnotherHost(file, () =>
        expect(snapshot(s)).toMatchObject({
          available: false,
          unavailable: {
            code: "journal_lock_lost",
            message: "another process took the journal over: this one writes nothing more to it",
          },
        }),
      );
      // A second look says nothing more. Before: nothing said the lock was lost, ever.
      expect(snapshot(s).unavailable?.code).toBe("journal_lock_lost");
      expect(lines).toEqual([
        {
          level: "error",
          message:
            "journal lock lost: another process took the journal over; the rail refuses payouts and invoices",
          fields: { lock: `${file}.lock` },
        },
      ]);
    } finally {
      await store.close();
      await rm(directory, { recursive: true, force: true });
    }
  });
});
