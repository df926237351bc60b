// Watching LND: a tick every refreshIntervalMs asks for its health (and, when it answers again after a
// disconnect, resubscribes to invoices and follows the payments whose streams broke), its channel balance and
// the background fee estimate; when it does not answer, a fresh client is tried with a backoff between
// reconnectDelayMinMs and reconnectDelayMaxMs. The snapshot the router reads is made from what the tick
// found and the recent outcomes; fee estimates for quotes are cached with their age.
import {
  authenticatedLndGrpc,
  decodePaymentRequest,
  getChannelBalance,
  getRouteToDestination,
  getWalletInfo,
} from "lightning";
import type { DestinationKind, OutgoingAttempt, RailSnapshot } from "../../core/index.ts";
import { divCeil } from "../../core/index.ts";
import { resubscribeInvoices } from "./events.ts";
import { classifyLndError, lndErrorText } from "./failures.ts";
import { track } from "./send.ts";
import { type FeeEstimate, type LightningRailState, withTimeout } from "./state.ts";

export type FeeEstimateResult =
  | { ok: true; value: FeeEstimate }
  | { ok: false; code: "unreachable_destination" | "rail_unavailable" | "rejected"; message: string };

const reaches: readonly DestinationKind[] = ["bolt11", "lightning_node"];
const latencyDefaultMs = 2_000;

export async function estimateFee(
  s: LightningRailState,
  feeParams: { destination: OutgoingAttempt["destination"]; amountMsat: bigint },
): Promise<FeeEstimateResult> {
  const { destination, amountMsat } = feeParams;
  let key: string;
  if (destination.kind === "lightning_node") key = destination.pubkey;
  else if (destination.kind === "bolt11") key = destination.invoice;
  else
    return {
      ok: false,
      code: "unreachable_destination",
      message: `Lightning cannot pay a ${destination.kind}`,
    };
  const cacheKey = `${key}:${amountMsat}`;
  const cached = s.feeCache.get(cacheKey);
  if (cached !== undefined && s.now() - cached.takenAtMs < s.limits.feeCacheTtlMs)
    return { ok: true, value: { ...cached, ageMs: s.now() - cached.takenAtMs } };
  try {
    const pubkey =
      destination.kind === "lightning_node"
        ? destination.pubkey
        : (await withTimeout(s, decodePaymentRequest({ lnd: s.lnd, request: destination.invoice }), "decode"))
            .destination;
    const { route } = await withTimeout(
      s,
      getRouteToDestination({ lnd: s.lnd, destination: pubkey, mtokens: amountMsat.toString() }),
      "route query",
    );
    if (!route) return { ok: false, code: "unreachable_destination", message: "no route" };
    const estimate: FeeEstimate = { feeMsat: BigInt(route.fee_mtokens), takenAtMs: s.now(), ageMs: 0 };
    if (s.feeCache.size >= s.limits.feeCacheEntriesMax) {
      const oldest = s.feeCache.keys().next();
      if (!oldest.done) s.feeCache.delete(oldest.value);
    }
    s.feeCache.set(cacheKey, estimate);
    return { ok: true, value: estimate };
  } catch (error) {
    const text = lndErrorText(error);
    const classified = classifyLndError(text);
    if (classified.kind === "disconnected") return { ok: false, code: "rail_unavailable", message: text };
    return { ok: false, code: "unreachable_destination", message: text };
  }
}

const onConnected = (s: LightningRailState) => {
  s.reconnectDelayMs = s.limits.reconnectDelayMinMs;
  resubscribeInvoices(s);
  for (const tracker of s.trackers.values()) if (tracker.detached) track(s, tracker); // not one between its journal write and its send
};

export async function refreshLiquidity(s: LightningRailState): Promise<void> {
  const balance = await withTimeout(s, getChannelBalance({ lnd: s.lnd }), "getChannelBalance");
  s.liquidity = {
    outboundMsat: BigInt(balance.channel_balance_mtokens ?? String(balance.channel_balance * 1000)),
    inboundMsat: BigInt(balance.inbound_mtokens ?? String((balance.inbound ?? 0) * 1000)),
    takenAtMs: s.now(),
  };
}

export async function tick(s: LightningRailState): Promise<void> {
  s.tickTimer = null;
  if (!s.running) return;
  let healthy = false;
  try {
    const info = await withTimeout(s, getWalletInfo({ lnd: s.lnd }), "getWalletInfo");
    const wasConnected = s.health.connected;
    s.health = {
      ...s.health,
      connected: true,
      syncedToChain: info.is_synced_to_chain,
      checkedAtMs: s.now(),
      lastError: null,
    };
    healthy = true;
    if (!wasConnected) s.logger.info({ socket: s.connection.socket }, "LND connected");
    onConnected(s);
    await refreshLiquidity(s);
    if (
      s.feeProbe !== undefined &&
      (s.probeEstimate === null || s.now() - s.probeEstimate.takenAtMs >= s.limits.feeCacheTtlMs)
    ) {
      const result = await estimateFee(s, {
        destination: { kind: "lightning_node", pubkey: s.feeProbe.destination },
        amountMsat: s.feeProbe.amountMsat,
      });
      if (result.ok) s.probeEstimate = result.value;
    }
  } catch (error) {
    const text = lndErrorText(error);
    if (healthy) s.logger.warn({ error: text }, "refresh failed");
    else {
      // Logged once: when a connection is lost (a broken stream has said so already) or the first check fails.
      if (s.health.connected || s.health.checkedAtMs === 0)
        s.logger.warn(
          { error: text, socket: s.connection.socket },
          s.health.connected ? "LND connection lost" : "LND unreachable",
        );
      s.health = { ...s.health, connected: false, checkedAtMs: s.now(), lastError: text };
      // A fresh client connects at once instead of waiting out gRPC's own reconnect backoff.
      s.lnd = authenticatedLndGrpc(s.connection).lnd;
      s.invoiceSubscription?.removeAllListeners();
      s.invoiceSubscription = null;
      for (const tracker of s.trackers.values()) {
        tracker.subscription?.removeAllListeners();
        tracker.subscription = null;
        tracker.detached = true;
      }
      s.reconnectDelayMs = Math.min(s.reconnectDelayMs * 2, s.limits.reconnectDelayMaxMs);
    }
  }
  scheduleTick(s, s.health.connected ? s.limits.refreshIntervalMs : s.reconnectDelayMs);
}

export function scheduleTick(s: LightningRailState, delayMs: number): void {
  if (!s.running) return;
  if (s.tickTimer !== null) {
    if (delayMs >= s.limits.refreshIntervalMs) return;
    clearTimeout(s.tickTimer);
  }
  s.tickTimer = setTimeout(() => void tick(s), delayMs);
}

export function snapshot(s: LightningRailState): RailSnapshot {
  const latencies = s.recent
    .filter((entry) => entry.ok)
    .map((entry) => entry.latencyMs)
    .sort((a, b) => a - b);
  const fees = s.recent
    .filter((entry) => entry.ok)
    .map((entry) => entry.feeMsat)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const feeMsat = s.probeEstimate?.feeMsat ?? fees[Math.floor(fees.length / 2)] ?? 0n;
  const rate = s.usdRate();
  return {
    rail: s.id,
    kind: "lightning",
    asset: s.asset,
    available: s.running && s.health.connected && s.health.syncedToChain,
    reaches,
    amountMin: s.limits.amountMinMsat,
    amountMax: s.limits.amountMaxMsat,
    liquidity: s.liquidity?.outboundMsat ?? 0n,
    feeFixed: 0n,
    feePpm: 0n,
    // Rounded up: the estimate must not look cheaper than it is.
    networkFeeMicroUsd: divCeil(feeMsat * rate.microUsd, rate.perMinorUnits),
    latencyMs: latencies[Math.floor(latencies.length / 2)] ?? latencyDefaultMs,
    takenAtMs: s.now(),
  };
}
