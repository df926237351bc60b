// The batched claims against store.ts's one-by-one ones, on PGlite: concurrent callers each get their own answer,
// one true per authorization however many ask at once, and a key store.ts claimed is taken for the batch too.
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupCommit } from "../../core/group-commit.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { ledgerMigrations } from "../ledger/index.ts";
import type { X402Chain } from "./chains.ts";
import { createClaimBatcher } from "./claims-batch.ts";
import { claim, isClaimed } from "./store.ts";
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
    const batcher = createClaimBatcher(db);
    const asked = Array.from({ length: 60 }, (_, i) => authorization(1 + ((i % 20) % 3), i % 20));
    const answers = await Promise.all(asked.map((a) => batcher.claim(chain, a, credit)));
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
    expect(await batcher.claim(chain, { ...fresh, from: fresh.from.toUpperCase() as Address }, credit)).toBe(
      false,
    );
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
