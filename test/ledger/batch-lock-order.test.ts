// Two gateway processes' group-committed batches on one PostgreSQL, locking overlapping rows: L402 request counting
// (gateway/l402/tokens.ts takeRequests, one UPDATE over a FOR UPDATE CTE, and returnRequests, which gives leased
// requests back the same way) and x402 claims (gateway/x402/claims-batch.ts claimAll: x402_claim_weighed, migration
// 0035, which locks the batch's payers in key order, then inserts the claims in key order). Each "process" is a pool
// of its own connections; they fire many overlapping batches at once, one naming the keys in one order and the other
// in the reverse one. Every statement takes its row locks in key order, so the batches wait for each other and never
// deadlock (40P01): without that order the L402 tests fail with "deadlock detected" (checked by removing each ORDER
// BY). And the counts stay exact: never more requests served than a token's requests_max, in total; every lease given
// back; every claim taken once; never more claims weighed in than a payer's balance covers.
import { createHash } from "node:crypto";
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { gatewayMigrations } from "../../gateway/app.ts";
import { type Db, migrate, openPostgres } from "../../gateway/db/index.ts";
import {
  returnRequests,
  type TakeRequestAsk,
  type TakeRequestResult,
  takeRequests,
} from "../../gateway/l402/tokens.ts";
import { ledgerMigrations } from "../../gateway/ledger/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { type ClaimRequest, claimAll } from "../../gateway/x402/claims-batch.ts";
import type { Eip3009Authorization } from "../../gateway/x402/verify.ts";
import { createTestDatabase } from "../support/postgres.ts";

const tenantId = "ten_lockorder";
/** The keys every batch names: many, so that two batches' statements are long enough to meet half-way. */
const keysPerBatch = 100;
const names = Array.from({ length: keysPerBatch }, (_, i) => `key ${i}`);
/** Other tokens, for the leases (counter.ts) and their return. */
const leaseNames = names.map((name) => `lease ${name}`);
const leaseAsked = 4;
/** Batches each process fires at once, per round, and the rounds. */
const callersPerProcess = 3;
const countingRounds = 30;
const claimRounds = 40;
/** Fewer than the asks (2 processes × 3 callers × 30 rounds = 180 per token): the last rounds find tokens exhausted. */
const requestsMax = 150;
/**
 * Tokens no batch names. In a table this size PostgreSQL joins a batch's keys through the primary key, locking the
 * rows in the order the batch names them, as in production; in a toy table it scans the table and locks in its order
 * whatever the batch's, and the missing ORDER BY went unseen (250 keys among 2,000 rows: no deadlock).
 */
const otherTokens = 20_000;

const hexOf = (text: string) => createHash("sha256").update(text).digest("hex");
const codeOf = (reason: unknown) => (reason as { code?: string }).code ?? String(reason);

// One piece by nature: a vitest suite, whose tests share the database made in its beforeAll; each test is short.
describe("overlapping batches of two processes in opposite key orders on PostgreSQL", () => {
  let url: string;
  let setup: Db;
  let processes: [Db, Db];

  beforeAll(async () => {
    url = await createTestDatabase(inject("postgresUrl"), "lockorder");
    setup = openPostgres({ url, poolSizeMax: 2, statementTimeoutMs: 60_000 });
    await migrate(setup, [ledgerMigrations, gatewayMigrations]);
    await setup.query("INSERT INTO tenants (id, name) VALUES ($1, 'lock order')", [tenantId]);
    await setup.query(
      `INSERT INTO accounts (id, tenant_id, kind, asset, ledger_account_id, name)
       VALUES ('acc_lockorder', $1, 'merchant', 'BTC', 1, 'lock order')`,
      [tenantId],
    );
    await setup.query(
      `INSERT INTO invoices (id, tenant_id, account_id, asset, amount, rail, status, description, rail_reference)
       VALUES ('inv_lockorder', $1, 'acc_lockorder', 'BTC', 1000, 'lightning', 'paid', 'lock order', $2)`,
      [tenantId, hexOf("payment")],
    );
    await setup.query(
      `INSERT INTO l402_tokens (key_id, tenant_id, root_key, payment_hash, invoice_id, paywall_id, service, requests_max, valid_until)
       SELECT encode(sha256(convert_to(name, 'UTF8')), 'hex'), $1, $2, $3, 'inv_lockorder', 'pw_lockorder', 'lock order',
              $4, now() + interval '1 day'
         FROM (SELECT unnest($5::text[]) AS name) names`,
      [
        tenantId,
        hexOf("root"),
        hexOf("payment"),
        requestsMax,
        [...names, ...leaseNames, ...Array.from({ length: otherTokens }, (_, i) => `other ${i}`)],
      ],
    );
    await setup.exec("ANALYZE");
    // Two processes: each its own pool, as many connections as it fires batches at once.
    processes = [0, 1].map(() =>
      openPostgres({ url, poolSizeMax: callersPerProcess, statementTimeoutMs: 60_000 }),
    ) as [Db, Db];
  });
  afterAll(async () => {
    await Promise.all((processes ?? []).map((db) => db.close()));
    await setup?.close();
  });

  it("counts L402 requests without a deadlock, never beyond requests_max", async () => {
    const asksOf = (order: readonly string[]): TakeRequestAsk[] =>
      order.map((name) => ({ tenantId, keyId: hexOf(name), requestsMax }));
    const orders = [asksOf(names), asksOf([...names].reverse())];
    const answers: { asks: TakeRequestAsk[]; results: TakeRequestResult[] }[] = [];
    const errors: unknown[] = [];
    for (let round = 0; round < countingRounds; round += 1) {
      const settled = await Promise.allSettled(
        processes.flatMap((db, p) =>
          Array.from({ length: callersPerProcess }, async () => {
            const asks = orders[p]!;
            answers.push({ asks, results: await takeRequests(db, asks) });
          }),
        ),
      );
      for (const outcome of settled) if (outcome.status === "rejected") errors.push(outcome.reason);
    }
    expect(errors.map(codeOf)).toEqual([]);

    // Per token: exactly requests_max served in all (more were asked), each count handed out once, as stored.
    const served = new Map<string, number[]>();
    for (const { asks, results } of answers)
      results.forEach((result, i) => {
        if (result.ok)
          served.set(asks[i]!.keyId, [...(served.get(asks[i]!.keyId) ?? []), result.requestsUsed]);
        else expect(result.reason).toBe("exhausted");
      });
    const everyCount = Array.from({ length: requestsMax }, (_, i) => i + 1);
    for (const name of names)
      expect(
        served.get(hexOf(name))?.sort((a, b) => a - b),
        name,
      ).toEqual(everyCount);
    const rows = await setup.query<{ requests_used: number }>(
      "SELECT requests_used FROM l402_tokens WHERE key_id = ANY($1::text[])",
      [names.map(hexOf)],
    );
    expect(rows.map((row) => Number(row.requests_used))).toEqual(names.map(() => requestsMax));
  });

  it("leases L402 requests and gives them back without a deadlock, the count exact", async () => {
    // Each batch takes a request of every token with a lease, then gives the lease back in the reverse order; the
    // other process does both the other way round, so takes and returns of the two cross.
    const asksOf = (order: readonly string[]): TakeRequestAsk[] =>
      order.map((name) => ({ tenantId, keyId: hexOf(name), requestsMax, lease: leaseAsked }));
    const orders = [asksOf(leaseNames), asksOf([...leaseNames].reverse())];
    const served = new Map<string, number>();
    let leasedTotal = 0;
    const errors: unknown[] = [];
    for (let round = 0; round < countingRounds; round += 1) {
      const settled = await Promise.allSettled(
        processes.flatMap((db, p) =>
          Array.from({ length: callersPerProcess }, async () => {
            const asks = orders[p]!;
            const results = await takeRequests(db, asks);
            const returned = results.map((result, i) => {
              if (result.ok) served.set(asks[i]!.keyId, (served.get(asks[i]!.keyId) ?? 0) + 1);
              leasedTotal += result.ok ? (result.leased ?? 0) : 0;
              return { tenantId, keyId: asks[i]!.keyId, requests: result.ok ? (result.leased ?? 0) : 0 };
            });
            await returnRequests(db, returned.reverse());
          }),
        ),
      );
      for (const outcome of settled) if (outcome.status === "rejected") errors.push(outcome.reason);
    }
    expect(errors.map(codeOf)).toEqual([]);
    expect(leasedTotal).toBeGreaterThan(0);
    // Every lease given back: each token's count is what was served, never beyond requests_max.
    const rows = await setup.query<{ key_id: string; requests_used: number }>(
      "SELECT key_id, requests_used FROM l402_tokens WHERE key_id = ANY($1::text[])",
      [leaseNames.map(hexOf)],
    );
    expect(rows).toHaveLength(keysPerBatch);
    for (const row of rows) {
      expect(Number(row.requests_used)).toBe(served.get(row.key_id));
      expect(Number(row.requests_used)).toBeLessThanOrEqual(requestsMax);
    }
  });

  it("claims x402 authorizations without a deadlock, each once", async () => {
    const chain = {
      chainId: 31337,
      token: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    } as unknown as X402Chain;
    const credit = { tenantId, accountId: "acc_lockorder" };
    const requestOf = (round: number, name: string): ClaimRequest => ({
      chain,
      credit,
      authorization: {
        from: `0x${hexOf(`payer ${name}`).slice(0, 40)}` as Address,
        to: `0x${"09".repeat(20)}` as Address,
        value: 1_000n,
        validAfter: 0n,
        validBefore: 2n ** 40n,
        nonce: `0x${hexOf(`nonce ${round} ${name}`)}` as Hex,
      } satisfies Eip3009Authorization,
      // Weighed, so that each batch locks its payers and reads their holds: a balance that covers every round.
      balance: { amount: 1_000n * BigInt(claimRounds), atBlock: 0n },
    });
    const taken = new Map<string, number>();
    const errors: unknown[] = [];
    for (let round = 0; round < claimRounds; round += 1) {
      const ascending = names.map((name) => requestOf(round, name));
      const orders = [ascending, [...ascending].reverse()];
      const settled = await Promise.allSettled(
        processes.flatMap((db, p) =>
          Array.from({ length: callersPerProcess }, async () => {
            const requests = orders[p]!;
            const won = (await claimAll(db, requests, 0n)).map((answer) => answer.kind === "claimed");
            requests.forEach((r, i) => {
              const key = `${r.authorization.from}|${r.authorization.nonce}`;
              taken.set(key, (taken.get(key) ?? 0) + (won[i] ? 1 : 0));
            });
          }),
        ),
      );
      for (const outcome of settled) if (outcome.status === "rejected") errors.push(outcome.reason);
    }
    expect(errors.map(codeOf)).toEqual([]);
    // Every authorization claimed by exactly one caller of the six, and stored once.
    expect(taken.size).toBe(claimRounds * keysPerBatch);
    expect([...taken.values()].filter((count) => count !== 1)).toEqual([]);
    // This test's token only: the weighing test below claims on another, in whatever order the two run.
    const [{ count }] = (await setup.query<{ count: bigint }>(
      "SELECT count(*)::int8 AS count FROM x402_authorizations WHERE tenant_id = $1 AND token = $2",
      [tenantId, chain.token.toLowerCase()],
    )) as [{ count: bigint }];
    expect(count).toBe(BigInt(claimRounds * keysPerBatch));
  });

  it("weighs x402 claims of the same payers in both processes: never more than a payer's balance covers", async () => {
    // Twelve payers, each holding five payments' worth; every batch of the six asks four payments of each, all
    // weighed against the same balance read: 24 asked per payer, exactly five claimed whatever the interleaving.
    const chain = { chainId: 31337, token: `0x${"ab".repeat(20)}` } as unknown as X402Chain;
    const credit = { tenantId, accountId: "acc_lockorder" };
    const payers = Array.from(
      { length: 12 },
      (_, i) => `0x${hexOf(`weighed payer ${i}`).slice(0, 40)}` as Address,
    );
    const asked = (p: number, caller: number) =>
      payers.flatMap((from) =>
        [0, 1, 2, 3].map(
          (n): ClaimRequest => ({
            chain,
            credit,
            balance: { amount: 5_000n, atBlock: 7n },
            authorization: {
              from,
              to: `0x${"09".repeat(20)}` as Address,
              value: 1_000n,
              validAfter: 0n,
              validBefore: 2n ** 40n,
              nonce: `0x${hexOf(`weighed ${p} ${caller} ${n} ${from}`)}` as Hex,
            },
          }),
        ),
      );
    const settled = await Promise.allSettled(
      processes.flatMap((db, p) =>
        Array.from({ length: callersPerProcess }, async (_, caller) => {
          const requests = asked(p, caller);
          return await claimAll(db, p === 0 ? requests : [...requests].reverse(), 0n);
        }),
      ),
    );
    expect(settled.filter((s) => s.status === "rejected").map((s) => codeOf(s.reason))).toEqual([]);
    const rows = await setup.query<{ payer: string; claimed: string; held: string }>(
      `SELECT h.payer, h.held::text AS held,
         (SELECT count(*) FROM x402_authorizations a
          WHERE a.chain_id = h.chain_id AND a.token = h.token AND a.payer = h.payer)::text AS claimed
       FROM x402_payer_holds h WHERE h.token = $1 ORDER BY h.payer`,
      [chain.token.toLowerCase()],
    );
    expect(rows).toHaveLength(payers.length);
    expect(rows.map((row) => [row.claimed, row.held])).toEqual(payers.map(() => ["5", "5000"]));
  });
});
