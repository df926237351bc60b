// Authentication of API keys, with a per-process memory of valid keys keyed by the key's SHA-256 (the secret itself
// is never kept).
//
// The bound: a key revoked, rolled out, past its expiry, or whose tenant is suspended — by any process — is refused
// by every process within apiKeyTrustMsMax (1 s). Two mechanisms give it: the change is announced on the change bus
// in the changing transaction, and every process forgets the key when the announcement arrives (typically within a
// millisecond or two of the commit); and no process trusts a remembered key longer than `ttlMs` (at most 1 s by
// default) nor past the key's own expires_at, whether the bus delivered or not.
//
// A key in use is renewed in the background: every ttlMs/4, the keys checked within the last `renewUsedWithinMs` whose
// trust is more than half spent are looked up again, all in one query, and trusted for another ttlMs from when that
// query began. A client paying once every few seconds then never waits on the key's lookup (on PGlite it cost about
// 2.7 ms, in one of every four payments of the lone Lightning bench); the bound is the same, since a renewal is a
// lookup like any other. An idle process renews nothing, and forgets what has expired.
//
// Nothing is looked up twice at once: checks of a key while its lookup runs await that lookup's answer (so the memory
// of a busy key expiring costs one query, not one per request in flight), unless that key was forgotten since that
// lookup began — it may have read the key just before its revocation committed — and then they start a fresh one.
//
// A secret without a key's shape and checksum (keys.ts) is refused before any lookup: a mistyped or made-up key
// costs no query. Nothing remembers unknown keys: the checksum already refuses what a guess would produce, a forger
// who computes checksums can make endless distinct keys that no bounded memory would hold, and the per-IP rate limit
// (gateway/http/rate-limit.ts) bounds how many such lookups one address can cause.
import { setBounded } from "../../core/index.ts";
import { type ChangeFeed, type Sql, textArrayLiteral } from "../db/index.ts";
import {
  type ApiKeyRecord,
  type ApiKeyRow,
  apiKeyColumns,
  apiKeyOfRow,
  digestOf,
  hasValidChecksum,
} from "./keys.ts";
import type { Tenant } from "./tenants.ts";

/** The longest any process trusts a key it found valid without asking the database again. */
export const apiKeyTrustMsMax = 1_000;

export type ApiKeyCacheLimits = {
  /** The most keys remembered at once; beyond it the least recently checked is forgotten. */
  entriesMax: number;
  /**
   * How long a key found valid is trusted without asking the database again (never past the key's expires_at).
   * Revocations arrive on the change bus at once; this bounds what a revocation the bus could not deliver waits.
   */
  ttlMs: number;
  /**
   * Keys checked within this long are renewed in the background before their trust runs out (one query for all of
   * them, every ttlMs/4); 0 or absent: none is, a key's lookup waits for the request that finds it expired.
   */
  renewUsedWithinMs?: number;
};

export const apiKeyCacheDefaults: ApiKeyCacheLimits = {
  entriesMax: 10_000,
  ttlMs: apiKeyTrustMsMax,
  renewUsedWithinMs: 60_000,
};

/** The most keys one renewal asks about in one query. */
const renewBatchMax = 1_000;

/** What a valid key says: its tenant, and the key (id, mode, scopes, pinned API version). */
export type ApiKeyPrincipal = { tenant: Tenant; key: ApiKeyRecord };

export type KeyCheck =
  | { ok: true; principal: ApiKeyPrincipal }
  /** `api_key_invalid`: malformed, unknown, revoked or expired; `tenant_suspended`: a working key of a suspended tenant. */
  | { ok: false; refusal: "api_key_invalid" | "tenant_suspended" };

const invalid: KeyCheck = { ok: false, refusal: "api_key_invalid" };
/** A key remembered valid: trusted until expiresAtMs, last checked at usedAtMs. */
type ValidKey = { principal: ApiKeyPrincipal; expiresAtMs: number; usedAtMs: number };
/** A key's lookup under way; `stale` once the bus made us forget that key (or everything) since it began. */
type Lookup = { stale: boolean; checked: Promise<KeyCheck> };

type KeyRow = ApiKeyRow & { tenant_name: string; tenant_status: string };

const keyColumns = `${apiKeyColumns
  .split(", ")
  .map((column) => `k.${column}`)
  .join(", ")}, t.name AS tenant_name, t.status AS tenant_status`;
/** A working key: not revoked, not expired. */
const keyWorks = "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())";

const checkOfRow = (row: KeyRow | undefined): KeyCheck => {
  if (row === undefined) return invalid;
  if (row.tenant_status !== "active") return { ok: false, refusal: "tenant_suspended" };
  return {
    ok: true,
    principal: { tenant: { id: row.tenant_id, name: row.tenant_name }, key: apiKeyOfRow(row) },
  };
};

async function checkDigest(sql: Sql, digest: Buffer): Promise<KeyCheck> {
  const rows = await sql.query<KeyRow>(
    `SELECT ${keyColumns} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.secret_sha256 = $1 AND ${keyWorks}`,
    [digest],
  );
  return checkOfRow(rows[0]);
}

/** The checks of many keys at once, by digest (base64); a digest without a working key is absent. */
async function checkDigests(sql: Sql, digests: readonly string[]): Promise<Map<string, KeyCheck>> {
  const rows = await sql.query<KeyRow & { digest: string }>(
    `SELECT ${keyColumns}, encode(k.secret_sha256, 'base64') AS digest
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.secret_sha256 = ANY (ARRAY(SELECT decode(d, 'base64') FROM unnest($1::text[]) AS d)) AND ${keyWorks}`,
    [textArrayLiteral(digests)],
  );
  return new Map(rows.map((row) => [row.digest, checkOfRow(row)]));
}

/** The tenant a secret key belongs to, or null for a malformed, unknown, revoked or expired key, or a suspended tenant's. Asks the database every time. */
export async function authenticate(sql: Sql, secret: string): Promise<Tenant | null> {
  if (!hasValidChecksum(secret)) return null;
  const check = await checkDigest(sql, digestOf(secret));
  return check.ok ? check.principal.tenant : null;
}

export type Authenticator = {
  /** The tenant a secret key belongs to, or null for a malformed, unknown, revoked or expired key, or a suspended tenant's. */
  authenticate(secret: string): Promise<Tenant | null>;
  /** What the key is and who it acts for, or why it is refused. */
  check(secret: string): Promise<KeyCheck>;
  /** check's answer, given at once (no promise) when it needs no query: a key remembered, or a made-up one. */
  checkNow(secret: string): KeyCheck | Promise<KeyCheck>;
  /** Stops hearing the change bus (the memory is dropped with the authenticator). */
  close(): void;
};

/**
 * Authentication with a per-process memory of valid keys. Only keys found valid are remembered, each until the
 * earlier of `ttlMs` from when its lookup's query began and the key's expiry: an unknown, revoked or suspended key always asks the database, so
 * a stream of made-up keys cannot fill the memory. A key revoked by any process is forgotten when its announcement
 * arrives on the change bus, and everything is forgotten on `resync`. Nothing is remembered while the bus is not
 * listening, nor from a lookup that began before its key was forgotten (it may have read the key just before its
 * revocation committed). Concurrent checks of one key share its lookup, refusals and failures included, unless
 * that key was forgotten since it began. Another key's revocation costs a lookup nothing: a tenant revoking keys in a
 * loop does not stop every other key being remembered or renewed.
 */
export function createAuthenticator(
  deps: { sql: Sql; nowMs: () => number; changes: ChangeFeed },
  limits: ApiKeyCacheLimits,
): Authenticator {
  /** Valid keys by digest, least recently checked first: trusted until expiresAtMs, last checked at usedAtMs. */
  const valid = new Map<string, ValidKey>();
  /**
   * Lookups under way, by digest (one entry per key being looked up; only keys with a valid checksum get here); an
   * entry leaves when its lookup settles, answered or failed. `stale`: the bus made us forget this key (or everything)
   * since it began, so it remembers nothing and no later check joins it. Only the key's own revocation makes its
   * lookup stale: another key's, however many, costs it nothing.
   */
  const lookups = new Map<string, Lookup>();
  const unsubscribe = deps.changes.subscribe((event) => {
    if (event.kind === "api_key_revoked") {
      valid.delete(event.digest);
      const running = lookups.get(event.digest);
      if (running !== undefined) running.stale = true;
    } else if (event.kind === "resync") {
      valid.clear();
      for (const running of lookups.values()) running.stale = true;
    }
  });
  /** How long a key read at `readAtMs` is trusted: ttlMs, never past its own expiry. */
  const trustedUntil = (principal: ApiKeyPrincipal, readAtMs: number) => {
    const expiresAt = principal.key.expiresAt;
    const untilMs = readAtMs + limits.ttlMs;
    return expiresAt === null ? untilMs : Math.min(untilMs, expiresAt.getTime());
  };
  const renewUsedWithinMs = limits.renewUsedWithinMs ?? 0;
  /**
   * Renews the keys in use whose trust is more than half spent, as a lookup would (from when its query began, only
   * the entries the bus did not make us forget meanwhile), and forgets those no longer valid and those expired.
   * Failures renew nothing: the keys then expire as they would have.
   */
  const renew = async () => {
    const startedMs = deps.nowMs();
    const due = new Map<string, ValidKey>();
    for (const [key, entry] of valid) {
      if (entry.expiresAtMs <= startedMs) valid.delete(key);
      else if (
        startedMs - entry.usedAtMs <= renewUsedWithinMs &&
        entry.expiresAtMs - startedMs <= limits.ttlMs / 2
      )
        due.set(key, entry);
    }
    if (due.size === 0 || !deps.changes.listening()) return;
    const keys = [...due.keys()];
    const checks = new Map<string, KeyCheck>();
    for (let at = 0; at < keys.length; at += renewBatchMax)
      for (const [key, check] of await checkDigests(deps.sql, keys.slice(at, at + renewBatchMax)))
        checks.set(key, check);
    const listening = deps.changes.listening();
    for (const [key, entry] of due) {
      // A key forgotten meanwhile (revoked, or a resync) left the memory; one looked up again since is a new entry.
      if (valid.get(key) !== entry) continue;
      const checked = checks.get(key);
      if (checked === undefined || !checked.ok) valid.delete(key);
      else if (listening) {
        entry.principal = checked.principal;
        entry.expiresAtMs = trustedUntil(checked.principal, startedMs);
      }
    }
  };
  // Every ttlMs/4: a key comes due with half its trust left, so it has two chances before that runs out.
  const renewals = renewalTimer(renewUsedWithinMs > 0 && limits.entriesMax > 0 ? limits.ttlMs / 4 : 0, {
    renew,
    more: () => valid.size > 0,
  });
  const lookUp = async (key: string, stale: () => boolean): Promise<KeyCheck> => {
    // Trusted from when the query began, as a renewal is: the row may have been read just before a revocation whose
    // announcement this process then missed, and the time until its answer was handled (a slow link, a busy loop)
    // must not be added to the bound.
    const startedMs = deps.nowMs();
    const checked = await checkDigest(deps.sql, Buffer.from(key, "base64"));
    if (!checked.ok || limits.entriesMax <= 0) return checked;
    if (stale() || !deps.changes.listening()) return checked;
    setBounded(
      valid,
      key,
      {
        principal: checked.principal,
        expiresAtMs: trustedUntil(checked.principal, startedMs),
        usedAtMs: deps.nowMs(),
      },
      limits.entriesMax,
    );
    renewals.start();
    return checked;
  };
  const checkNow = (secret: string): KeyCheck | Promise<KeyCheck> => {
    // The digest as the memory's key (base64, as the bus announces a revoked one): hashed straight to text, a fifth of
    // the cost of a Buffer turned into text, on every request.
    const key = digestOf(secret, "base64");
    // A key remembered passed its checksum when it was looked up: only one that is not is checked (no query for a
    // made-up key).
    const cached = valid.get(key);
    if (cached !== undefined) {
      valid.delete(key); // re-inserted below when still valid: the Map's order is least recently checked first
      const nowMs = deps.nowMs();
      if (cached.expiresAtMs > nowMs) {
        cached.usedAtMs = nowMs;
        valid.set(key, cached);
        return { ok: true, principal: cached.principal };
      }
    }
    if (cached === undefined && !hasValidChecksum(secret)) return invalid;
    const running = lookups.get(key);
    if (running !== undefined && !running.stale) return running.checked;
    const lookup: Lookup = { stale: false, checked: lookUp(key, () => lookup.stale) };
    lookups.set(key, lookup);
    const settled = () => {
      if (lookups.get(key) === lookup) lookups.delete(key);
    };
    lookup.checked.then(settled, settled);
    return lookup.checked;
  };
  const check = async (secret: string): Promise<KeyCheck> => checkNow(secret);
  return {
    check,
    checkNow,
    async authenticate(secret) {
      const checked = await check(secret);
      return checked.ok ? checked.principal.tenant : null;
    },
    close() {
      renewals.stop();
      unsubscribe();
      // A lookup still under way remembers nothing, and no later check joins it.
      for (const running of lookups.values()) running.stale = true;
      valid.clear();
      lookups.clear();
    },
  };
}

/**
 * Runs `renew` every `periodMs` (0: never) from `start` on, one at a time, while `more` says there is something left to
 * renew; the timer keeps no process alive.
 */
function renewalTimer(periodMs: number, work: { renew: () => Promise<void>; more: () => boolean }) {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const tick = () => {
    work
      .renew()
      .catch(() => {}) // nothing renewed: the keys expire, and their next check looks them up
      .finally(() => {
        timer = null;
        if (!stopped && work.more()) schedule();
      });
  };
  const schedule = () => {
    timer = setTimeout(tick, periodMs);
    timer.unref();
  };
  return {
    start() {
      if (periodMs > 0 && !stopped && timer === null) schedule();
    },
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
