// The rail with no LND to talk to (a port nobody listens on): what it throws and what it logs. The rail against
// a real LND is test/lightning.
import { describe, expect, it, vi } from "vitest";
import { SwitchyardError } from "../../core/index.ts";
import { freePort } from "../../scripts/lib/free-port.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { LightningRailError } from "./errors.ts";
import { createLightningRail } from "./rail.ts";
import { createMemoryRailStore } from "./store.ts";

describe("the Lightning rail without LND", () => {
  it("translates lightning's rejection of the balance into a LightningRailError, the array as its cause", async () => {
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
    });
    const error = await rail.balance().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LightningRailError);
    expect(error).toBeInstanceOf(SwitchyardError);
    expect((error as LightningRailError).shortMessage).toBe("LND did not report its channel balance");
    expect((error as LightningRailError).details).toMatch(/No connection established/);
    expect(Array.isArray((error as LightningRailError).cause)).toBe(true);
  });

  it("logs through the logger it is given that LND is unreachable, once, however often it retries", async () => {
    const { logger, lines } = recordingLogger();
    const socket = `127.0.0.1:${await freePort()}`;
    const rail = createLightningRail({
      lnd: { socket, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
      limits: { rpcTimeoutMs: 200, reconnectDelayMinMs: 50, reconnectDelayMaxMs: 100 },
      logger,
    });
    await rail.start();
    try {
      expect(rail.health().connected).toBe(false);
      await vi.waitFor(() => expect(rail.health().checkedAtMs).toBeGreaterThan(0));
      // Let it retry a few times: each failed check is not logged again.
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(lines).toEqual([
        {
          level: "warn",
          message: "LND unreachable",
          fields: { socket, error: expect.any(String) },
        },
      ]);
    } finally {
      await rail.stop();
    }
  });

  it("refuses to receive, making nothing, what it cannot offer: out of range, LND away", async () => {
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
      limits: { amountMaxMsat: 1_000_000n, memoLengthMax: 8 },
    });
    const request = { reference: "inv_1", amount: 1_000n, description: "top-up", expirySeconds: 60 };
    expect(await rail.receive({ ...request, amount: 1_000_001n })).toMatchObject({
      status: "refused",
      code: "amount_too_large",
    });
    expect(await rail.receive({ ...request, amount: 0n })).toMatchObject({
      status: "refused",
      code: "rejected",
    });
    expect(await rail.receive(request)).toMatchObject({ status: "refused", code: "rail_unavailable" });
  });

  it("leaves the success and failure counts out of its snapshot: the router's learning writes them", async () => {
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
    });
    const snapshot = rail.snapshot();
    expect(snapshot).toMatchObject({ rail: "lightning", available: false, latencyMs: 2_000 });
    expect(snapshot).not.toHaveProperty("successes");
    expect(snapshot).not.toHaveProperty("failures");
  });

  it("never tells the router a route to an unknown destination is free: with no estimate, the configured fee", async () => {
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
      limits: { unknownRouteFeeBaseMsat: 3_000n, unknownRouteFeePpm: 500n },
    });
    const snapshot = rail.snapshot();
    expect(snapshot.networkFee).toEqual({ kind: "lightning_routing", base: 3_000n, ppm: 500n });
    // One millisatoshi is one micro-USD at the default rate.
    expect(snapshot.networkFeeMicroUsd).toBe(3_000n);
    expect(
      createLightningRail({
        lnd: { socket: "127.0.0.1:1", cert: "", macaroon: "00" },
        store: createMemoryRailStore(),
      }).snapshot().networkFee,
    ).toEqual({ kind: "lightning_routing", base: 2_000n, ppm: 1_000n });
  });

  it("estimates a destination it cannot pay as unreachable, and leaves the snapshot's model to stand while LND is away", async () => {
    const rail = createLightningRail({
      lnd: { socket: `127.0.0.1:${await freePort()}`, cert: "", macaroon: "00" },
      store: createMemoryRailStore(),
    });
    expect(
      await rail.estimateNetworkFee({
        destination: { kind: "account", accountId: "acct_1" },
        amount: 1_000n,
      }),
    ).toEqual({ kind: "unreachable", detail: "Lightning cannot pay a account" });
    const node = { kind: "lightning_node", pubkey: `02${"11".repeat(32)}` } as const;
    expect(await rail.estimateNetworkFee({ destination: node, amount: 1_000n })).toBeNull();
  });
});
