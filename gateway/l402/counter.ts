// Counting an L402 token's requests in one process, on top of the token rows (tokens.ts). Every count is durable in
// the row before a request is served, so processes sharing the database never serve beyond a token's count; what
// this adds is leases. A request that the process's lease on the token covers is served without a statement; one
// that it does not cover joins the next counting statement (group commit), which counts it and also leases more for
// the requests that follow — one such statement per token at a time, the requests that find it on its way waiting
// for its lease: `leaseFirst` on a token's first statement, then four times the last lease, up to `leaseMax`, and
// never more than a quarter of what the token's bound leaves (tokens.ts), so the tail of a counted token is counted
// one statement at a time and one process's lease never strands the last requests while another is refused.
//
// What a lease costs: requests leased and not served are counted as used until they are given back — by the sweep
// once the lease is `leaseLifetimeMs` old (also while in use: a busy token takes a fresh lease each lifetime), by
// close(), or before an attenuated ask of the same token is counted. A process that dies loses its leases: at most
// `leaseMax` requests of a token go unserved (never one served twice). A revoked token (its row deleted) is refused
// by the next statement: within `leaseLifetimeMs` on every process.
//
// Leases are only for an ask whose bound is the token's own (`rowRequestsMax`); an attenuated macaroon's tighter bound
// is judged by the statement against the row, after this process's lease on that token was given back, so the
// requests leased here do not count against it, and the token is leased no more in this process (for
// `attenuatedMemoryMs`): its requests are then counted one statement each, as before leases. What is not exact: a
// lease another process holds, or one a statement of this process was taking at that moment, still counts against
// the attenuated bound until it is given back (at most `leaseLifetimeMs`): such a request is refused as exhausted —
// never served beyond a bound, but a payer may be asked to pay again.
import { groupCommit } from "../../core/group-commit.ts";
import type { Logger } from "../../core/index.ts";
import { setBounded, silentLogger } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import {
  giveBackRequest,
  type ReturnedRequests,
  returnRequests,
  type TakeRequestAsk,
  type TakeRequestResult,
  takeRequests,
} from "./tokens.ts";

export type RequestCounterLimits = {
  /**
   * The most requests one lease holds; 0: no leases, one statement per batch of requests (as before leases). 256: at
   * 15,000 paid requests a second on one token, one statement every 17 ms instead of one per batch of requests (64
   * kept PGlite's share of the CPU near 8%); what a crash can leave unserved.
   */
  leaseMax: number;
  /** The lease a token's first statement asks for (a token used once leases little). */
  leaseFirst: number;
  /** How long a lease is used before what is left of it is given back. */
  leaseLifetimeMs: number;
  /** The most requests one counting statement carries. */
  batchMax: number;
  /** How long a token presented with an attenuated bound is not leased in this process. */
  attenuatedMemoryMs: number;
};

export const requestCounterDefaults: RequestCounterLimits = {
  leaseMax: 256,
  leaseFirst: 2,
  leaseLifetimeMs: 1_000,
  batchMax: 1_000,
  attenuatedMemoryMs: 10 * 60_000,
};

/** The most tokens remembered as presented attenuated (the oldest forgotten first). */
const attenuatedRememberedMax = 10_000;

/** A request to count: the ask, and the bound of the token's row (null: uncounted). */
export type CountAsk = TakeRequestAsk & { rowRequestsMax: number | null };

/** Whether the request may be served; a refusal says why (tokens.ts). */
export type CountResult = { ok: true } | Extract<TakeRequestResult, { ok: false }>;

export type RequestCounter = {
  take(ask: CountAsk): Promise<CountResult>;
  /** One counted request not served (its handler failed): given back to the token's row, for any process. */
  giveBack(params: { tenantId: string; keyId: string }): Promise<void>;
  /** Gives back every lease and stops the sweep. */
  close(): Promise<void>;
};

type Lease = {
  tenantId: string;
  keyId: string;
  /** The bound the lease was counted under (the row's). */
  cap: number | null;
  left: number;
  /** The lease the next statement asks for. */
  next: number;
  takenAtMs: number;
};

export function createRequestCounter(deps: {
  db: Sql;
  limits?: Partial<RequestCounterLimits>;
  nowMs?: () => number;
  logger?: Logger;
}): RequestCounter {
  const limits: RequestCounterLimits = { ...requestCounterDefaults, ...deps.limits };
  const nowMs = deps.nowMs ?? Date.now;
  const logger = deps.logger ?? silentLogger;
  const leases = new Map<string, Lease>();
  /**
   * Tokens a statement of this process is taking a lease on now, each until that lease is kept. Only one asks at a
   * time: two taken at once would both be granted against the same remainder and stack beyond `leaseMax` (what a crash
   * may strand) and beyond the quarter of what the bound leaves. A request that finds one on its way waits for it and
   * is served from it; if it does not cover the request, the request is counted without a lease of its own.
   */
  const leasing = new Map<string, Promise<void>>();
  /** Tokens presented with an attenuated bound, and when: not leased until `attenuatedMemoryMs` later. */
  const attenuated = new Map<string, number>();
  function attenuatedLately(name: string): boolean {
    const at = attenuated.get(name);
    if (at === undefined) return false;
    if (nowMs() - at < limits.attenuatedMemoryMs) return true;
    attenuated.delete(name);
    return false;
  }
  function rememberAttenuated(name: string): void {
    setBounded(attenuated, name, nowMs(), attenuatedRememberedMax); // set again as the newest if remembered
  }
  const nameOf = (tenantId: string, keyId: string) => `${tenantId}\u0000${keyId}`;
  let closed = false;

  // One statement a batch. A token presented attenuated by then (in this batch or while it ran) takes no lease, and
  // what it was granted is given back before the next statement, so the next attenuated ask does not count it.
  const count = groupCommit(async (asks: readonly TakeRequestAsk[]): Promise<TakeRequestResult[]> => {
    const unleasable = (ask: TakeRequestAsk) => closed || attenuatedLately(nameOf(ask.tenantId, ask.keyId));
    const results = await takeRequests(
      deps.db,
      asks.map((ask) => (unleasable(ask) ? { ...ask, lease: 0 } : ask)),
    );
    const late: ReturnedRequests[] = [];
    const answers = results.map((result, i) => {
      const ask = asks[i]!;
      if (!result.ok || result.leased === undefined || !unleasable(ask)) return result;
      late.push({ tenantId: ask.tenantId, keyId: ask.keyId, requests: result.leased });
      const { leased: _late, ...served } = result;
      return served;
    });
    if (late.length > 0) await giveBackLeased(late);
    return answers;
  }, limits.batchMax);

  /** Gives back what is left of `dropped` (already out of the map), logging a failure: the requests stay counted. */
  async function giveBackLeases(dropped: readonly Lease[]): Promise<void> {
    const returned: ReturnedRequests[] = dropped
      .filter((lease) => lease.left > 0)
      .map((lease) => ({ tenantId: lease.tenantId, keyId: lease.keyId, requests: lease.left }));
    for (const lease of dropped) lease.left = 0;
    await giveBackLeased(returned);
  }

  async function giveBackLeased(returned: readonly ReturnedRequests[]): Promise<void> {
    if (returned.length === 0) return;
    try {
      await returnRequests(deps.db, returned);
    } catch (error) {
      logger.warn({ err: error, tokens: returned.length }, "l402: giving back leased requests failed");
    }
  }

  function sweep(): Promise<void> {
    const now = nowMs();
    const old: Lease[] = [];
    for (const [name, lease] of leases)
      if (now - lease.takenAtMs >= limits.leaseLifetimeMs) {
        leases.delete(name);
        old.push(lease);
      }
    return giveBackLeases(old);
  }

  let sweeping: Promise<void> | null = null;
  const timer =
    limits.leaseMax > 0
      ? setInterval(
          () => {
            sweeping ??= sweep().finally(() => {
              sweeping = null;
            });
          },
          Math.max(50, Math.floor(limits.leaseLifetimeMs / 4)),
        )
      : null;
  timer?.unref();

  async function take(ask: CountAsk): Promise<CountResult> {
    const name = nameOf(ask.tenantId, ask.keyId);
    const own = ask.requestsMax === ask.rowRequestsMax;
    if (!own) rememberAttenuated(name);
    // A lease another request of this process is taking on the token: waited for, as it may cover this one.
    const taking = leasing.get(name);
    if (own && taking !== undefined) await taking;
    let lease = leases.get(name);
    if (lease !== undefined && nowMs() - lease.takenAtMs >= limits.leaseLifetimeMs) {
      // Lived its lifetime (the sweep has not come by yet): given back, so a revocation is seen within it.
      leases.delete(name);
      await giveBackLeases([lease]);
      lease = undefined;
    }
    const leasable = !closed && limits.leaseMax > 0 && own && !attenuatedLately(name);
    if (lease !== undefined && leasable && lease.cap === ask.requestsMax && lease.left > 0) {
      lease.left -= 1;
      return { ok: true };
    }
    if (lease !== undefined && !leasable && lease.left > 0) {
      // An attenuated bound is judged against what was served, not what this process leased.
      leases.delete(name);
      await giveBackLeases([lease]);
    }
    const wanted =
      leasable && !leasing.has(name) ? Math.min(lease?.next ?? limits.leaseFirst, limits.leaseMax) : 0;
    const { rowRequestsMax: _row, ...counted } = ask;
    let kept = () => {};
    if (wanted > 0)
      leasing.set(
        name,
        new Promise<void>((resolve) => {
          kept = resolve;
        }),
      );
    let result: TakeRequestResult;
    try {
      result = await count({ ...counted, lease: wanted });
      if (result.ok && result.leased !== undefined && result.leased > 0) {
        const fresh: Lease = {
          tenantId: ask.tenantId,
          keyId: ask.keyId,
          cap: ask.requestsMax,
          left: result.leased,
          next: Math.min(wanted * 4, limits.leaseMax),
          takenAtMs: nowMs(),
        };
        const held = leases.get(name);
        if (closed || attenuatedLately(name)) await giveBackLeases([fresh]);
        else if (held !== undefined && held.cap === fresh.cap) {
          // What the old lease has left and the fresh one, never more than leaseMax together: the rest goes back.
          const together = held.left + fresh.left;
          held.left = Math.min(together, limits.leaseMax);
          held.next = Math.max(held.next, fresh.next);
          if (together > held.left)
            await giveBackLeased([
              { tenantId: ask.tenantId, keyId: ask.keyId, requests: together - held.left },
            ]);
        } else {
          leases.set(name, fresh);
          if (held !== undefined) await giveBackLeases([held]);
        }
      }
    } finally {
      if (wanted > 0) {
        leasing.delete(name);
        kept();
      }
    }
    if (result.ok) return { ok: true };
    if (result.reason === "revoked") {
      // The row is gone: what was leased on it serves no one.
      leases.delete(name);
      return result;
    }
    // Used up by the count, maybe by a lease another request of this process took meanwhile: served from that.
    const meanwhile = leases.get(name);
    if (leasable && meanwhile !== undefined && meanwhile.cap === ask.requestsMax && meanwhile.left > 0) {
      meanwhile.left -= 1;
      return { ok: true };
    }
    return result;
  }

  return {
    take,
    // To the row, not to this process's lease: another process may serve it at once (a handler failure is rare).
    async giveBack(params) {
      await giveBackRequest(deps.db, params);
    },
    async close() {
      closed = true;
      if (timer !== null) clearInterval(timer);
      await sweeping;
      const all = [...leases.values()];
      leases.clear();
      await giveBackLeases(all);
    },
  };
}
