// The batched claims against store.ts's one-by-one ones, on PGlite: concurrent callers each get their own answer,
// one true per authorization however many ask at once, and a key store.ts claimed is taken for the batch too.
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupCommit } from "../../core/group-commit.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import type { X402Chain } from "./chains.ts";
import { type ClaimRequest, claimAll, createClaimBatcher } from "./claims-batch.ts";
import { claim, isClaimed, record, release } from "./store.ts";
import type { Eip3009Authorization } from "./verify.ts";

let db: Db;
beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  await db.query("INSERT INTO tenants (id, name) VALUES ($1, $2)", ["ten_claims", "claims"]);
});
afterAll(async () => {
  await db.close();
});

const chain = { chainId: 31337, token: "0x5FbDB2315678afecb367f032d93F642f64180aa3" } as unknown as X402Chain;
const credit = { tenantId: "ten_claims", accountId: "acc_1" };
const hex = (n: number, bytes: number) => `0x${n.toString(16).padStart(2 * bytes, "0")}` as Hex;
const authorization = (payer: number, nonce: number): Eip3009Authorization => ({
  from: hex(payer, 20) as Address,
  to: hex(999, 20) as Address,
  value: 1000n,
  validAfter: 0n,
  validBefore: 2n ** 40n,
  nonce: hex(nonce, 32),
});

describe("claims-batch", () => {
  it("gives each concurrent caller its own answer: one true per authorization", async () => {
    const batcher = createClaimBatcher(db, () => 0n);
    const asked = Array.from({ length: 60 }, (_, i) => authorization(1 + ((i % 20) % 3), i % 20));
    const answers = (await Promise.all(asked.map((a) => batcher.claim(chain, a, credit, null)))).map(
      (answer) => answer.kind === "claimed",
    );
    const won = new Map<string, number>();
    asked.forEach((a, i) => {
      const key = `${a.from}|${a.nonce}`;
      won.set(key, (won.get(key) ?? 0) + (answers[i] ? 1 : 0));
    });
    expect(won.size).toBe(20);
    expect([...won.values()].every((count) => count === 1)).toBe(true);
    // What store.ts reads and does agrees, one way and the other.
    for (const a of asked.slice(0, 20)) {
      expect(await isClaimed(db, chain, a)).toBe(true);
      expect(await claim(db, chain, a, credit)).toBe(false);
    }
    const fresh = authorization(7, 7);
    expect(await isClaimed(db, chain, fresh)).toBe(false);
    expect(await claim(db, chain, fresh, credit)).toBe(true);
    expect(
      await batcher.claim(chain, { ...fresh, from: fresh.from.toUpperCase() as Address }, credit, null),
    ).toEqual({ kind: "taken" });
    const rows = await db.query<{ amount: string; tenant_id: string; status: string; valid_before: string }>(
      `SELECT amount::text AS amount, tenant_id, status, valid_before::text AS valid_before
         FROM x402_authorizations WHERE payer = ANY($1::text[])`,
      [[hex(1, 20), hex(7, 20)]],
    );
    expect(rows.length).toBeGreaterThan(1);
    // Both ways of claiming keep the window's end, which the reconciler concludes a dropped transaction by.
    expect(
      rows.every(
        (r) =>
          r.amount === "1000" &&
          r.tenant_id === "ten_claims" &&
          r.status === "claimed" &&
          r.valid_before === (2n ** 40n).toString(),
      ),
    ).toBe(true);
  });

  describe("weighing against the payer's balance", () => {
    const payer = 40;
    const ask = (
      nonce: number,
      balance: { amount: bigint; atBlock: bigint } | null,
      validBefore = 2n ** 40n,
    ): ClaimRequest => ({
      chain,
      credit,
      authorization: { ...authorization(payer, nonce), validBefore },
      balance,
    });
    const at = (amount: bigint, atBlock: bigint) => ({ amount, atBlock });
    const kinds = async (requests: ClaimRequest[], nowS = 0n) =>
      (await claimAll(db, requests, nowS)).map((answer) => answer.kind);
    /** The payer's row of x402_payer_holds, and what its pending rows add up to: the trigger keeps them equal. */
    const holds = async () => {
      const [row] = await db.query<{ held: string; pending: string }>(
        `SELECT h.held::text AS held,
           (SELECT coalesce(sum(amount), 0)::text FROM x402_authorizations a
            WHERE a.payer = h.payer AND a.status IN ('claimed', 'submitted') AND NOT a.hold_lapsed) AS pending
         FROM x402_payer_holds h WHERE h.payer = $1`,
        [hex(payer, 20)],
      );
      expect(row!.held).toBe(row!.pending);
      return BigInt(row!.held);
    };

    it("holds what its pending payments and those spent at or after the balance's block hold, in the batch's order", async () => {
      // Each payment is 1 000: a balance of 2 500 covers two of three asked at once, and the one refused holds nothing.
      expect(
        await kinds([ask(1, at(2_500n, 10n)), ask(2, at(2_500n, 10n)), ask(3, at(2_500n, 10n))]),
      ).toEqual(["claimed", "claimed", "short"]);
      expect(await holds()).toBe(2_000n);
      // A key claimed before is taken before it is weighed: it uses none of the room another payment fits in.
      expect(
        await claimAll(db, [ask(1, at(3_000n, 10n)), ask(4, at(3_000n, 10n)), ask(4, at(3_000n, 10n))], 0n),
      ).toEqual([{ kind: "taken" }, { kind: "claimed" }, { kind: "taken" }]);
      expect(await holds()).toBe(3_000n);
      // Given back, 1 is no longer held; 2 spent in block 12 is not pending, but a balance read at block 12 or
      // before may not show it; 4 failed holds nothing.
      expect(await release(db, chain, authorization(payer, 1), { invoiceId: null })).toBe(true);
      await record(db, chain, authorization(payer, 2), {
        status: "settled",
        txHash: "0x02",
        spentBlock: 12n,
      });
      await record(db, chain, authorization(payer, 4), { status: "failed", failure: "reverted" });
      expect(await holds()).toBe(0n);
      expect(await claimAll(db, [ask(5, at(2_500n, 12n)), ask(6, at(2_500n, 12n))], 0n)).toEqual([
        { kind: "claimed" },
        { kind: "short", balance: 2_500n, held: 2_000n },
      ]);
      // Read at block 13, the balance shows 2: only 5 is held against it.
      expect(await kinds([ask(6, at(1_999n, 13n))])).toEqual(["short"]);
      expect(await kinds([ask(6, at(2_000n, 13n))])).toEqual(["claimed"]);
      expect(await holds()).toBe(2_000n);
      // A payment not weighed (its balance not read) is claimed, and held all the same.
      expect(await kinds([ask(7, null)])).toEqual(["claimed"]);
      expect(await holds()).toBe(3_000n);
      for (const nonce of [5, 6, 7])
        await record(db, chain, authorization(payer, nonce), { status: "failed", failure: "reverted" });
      expect(await holds()).toBe(0n);
    });

    it("lets a pending payment go a minute past its validBefore, when the payer needs the room", async () => {
      expect(await kinds([ask(20, at(1_000n, 20n), 100n)], 0n)).toEqual(["claimed"]);
      expect(await kinds([ask(21, at(1_000n, 20n))], 159n)).toEqual(["short"]);
      expect(await holds()).toBe(1_000n);
      expect(await kinds([ask(21, at(1_000n, 20n))], 160n)).toEqual(["claimed"]);
      const [lapsed] = await db.query<{ hold_lapsed: boolean; status: string }>(
        "SELECT hold_lapsed, status FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
        [hex(payer, 20), hex(20, 32)],
      );
      expect(lapsed).toEqual({ hold_lapsed: true, status: "claimed" });
      // Its outcome recorded later does not take it off the holds a second time.
      await record(db, chain, authorization(payer, 20), { status: "failed", failure: "reverted" });
      expect(await holds()).toBe(1_000n);
      await record(db, chain, authorization(payer, 21), { status: "failed", failure: "reverted" });
      expect(await holds()).toBe(0n);
    });
  });

  it("gathers the calls made while one batch is in flight into the next, and fails only that batch", async () => {
    const sizes: number[] = [];
    const run = groupCommit(async (items: readonly number[]) => {
      sizes.push(items.length);
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (items.includes(-1)) throw new Error("refused batch");
      return items.map((n) => n * 2);
    }, 8);
    expect(await Promise.all([1, 2, 3, 4, 5].map(run))).toEqual([2, 4, 6, 8, 10]);
    expect(sizes).toEqual([1, 4]);
    const settled = await Promise.allSettled([run(1), run(-1), run(3)]);
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "rejected"]);
    expect(await run(6)).toBe(12);
  });
});
