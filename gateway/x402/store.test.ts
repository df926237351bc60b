// store.ts's release on PGlite: it gives back only the caller's claim, the one bound to the invoice it names (or to
// none). A release retried after its first DELETE went through must leave alone the claim another payment of the
// same (payer, nonce) took in between, bound to another invoice. And markUnsentOwed: a row only for an invoice the
// rail holds bound, the authorization's rows of invoices it holds no more deleted.
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationSources } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import type { X402Chain } from "./chains.ts";
import { claim, isClaimed, markUnsentOwed, record, release } from "./store.ts";
import type { Eip3009Authorization } from "./verify.ts";

let db: Db;
beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, migrationSources);
  await db.query("INSERT INTO tenants (id, name) VALUES ($1, $2)", ["ten_release", "release"]);
});
afterAll(async () => {
  await db.close();
});

const chain = { chainId: 31337, token: "0x5FbDB2315678afecb367f032d93F642f64180aa3" } as unknown as X402Chain;
const credit = { tenantId: "ten_release", accountId: "acc_1" };
const hex = (n: number, bytes: number) => `0x${n.toString(16).padStart(2 * bytes, "0")}` as Hex;
const authorization = (nonce: number): Eip3009Authorization => ({
  from: hex(1, 20) as Address,
  to: hex(999, 20) as Address,
  value: 1000n,
  validAfter: 0n,
  validBefore: 2n ** 40n,
  nonce: hex(nonce, 32),
});
const invoiceOf = async (a: Eip3009Authorization) => {
  const rows = await db.query<{ invoice_id: string | null }>(
    "SELECT invoice_id FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
    [a.from.toLowerCase(), a.nonce],
  );
  return rows.map((row) => row.invoice_id);
};

describe("release", () => {
  it("retried, leaves the claim another invoice took after its first delete", async () => {
    const a = authorization(1);
    expect(await claim(db, chain, a, credit)).toBe(true);
    await record(db, chain, a, { status: "claimed", invoiceId: "inv_first" });
    expect(await release(db, chain, a, { invoiceId: "inv_first" })).toBe(true);
    // The same authorization comes again and is bound to a new invoice; then the first release is retried.
    expect(await claim(db, chain, a, credit)).toBe(true);
    await record(db, chain, a, { status: "claimed", invoiceId: "inv_second" });
    expect(await release(db, chain, a, { invoiceId: "inv_first" })).toBe(false);
    expect(await invoiceOf(a)).toEqual(["inv_second"]);
    // Its own release gives it back.
    expect(await release(db, chain, a, { invoiceId: "inv_second" })).toBe(true);
    expect(await isClaimed(db, chain, a)).toBe(false);
  });

  it("of a claim bound to no invoice, leaves one bound to an invoice", async () => {
    const a = authorization(2);
    expect(await claim(db, chain, a, credit)).toBe(true);
    await record(db, chain, a, { status: "claimed", invoiceId: "inv_bound" });
    expect(await release(db, chain, a, { invoiceId: null })).toBe(false);
    expect(await invoiceOf(a)).toEqual(["inv_bound"]);
    const unbound = authorization(3);
    expect(await claim(db, chain, unbound, credit)).toBe(true);
    expect(await release(db, chain, unbound, { invoiceId: "inv_bound" })).toBe(false);
    expect(await release(db, chain, unbound, { invoiceId: null })).toBe(true);
    expect(await isClaimed(db, chain, unbound)).toBe(false);
  });

  it("never gives back a claim whose transaction was sent", async () => {
    const a = authorization(4);
    expect(await claim(db, chain, a, credit)).toBe(true);
    await record(db, chain, a, { status: "claimed", invoiceId: "inv_sent" });
    await record(db, chain, a, { status: "submitted", txHash: hex(5, 32) });
    expect(await release(db, chain, a, { invoiceId: "inv_sent" })).toBe(false);
    expect(await isClaimed(db, chain, a)).toBe(true);
  });
});

describe("markUnsentOwed", () => {
  const owed = { paywallId: "pw_unsent", tenantId: "ten_release", verifiedBlock: 41n };
  /** The rail's deposit row of `invoiceId`, bound to the authorization's payer and nonce, or to its own nonce. */
  const deposit = (invoiceId: string, a: Eip3009Authorization | null) =>
    db.query(
      `INSERT INTO evm_deposits (chain_id, token, reference, amount, salt, auth_nonce, client_secret, expires_at,
                                 watch_until, auth_from)
       VALUES ($1, $2, $3, 1000, $3, $4, $3, now() + interval '1 day', now() + interval '2 days', $5)`,
      [
        chain.chainId,
        chain.token.toLowerCase(),
        invoiceId,
        a?.nonce ?? `own:${invoiceId}`,
        a?.from.toLowerCase() ?? null,
      ],
    );
  const rowsOf = async (a: Eip3009Authorization) =>
    (
      await db.query<{ invoice_id: string }>(
        "SELECT invoice_id FROM x402_unsent_owed WHERE payer = $1 AND nonce = $2 ORDER BY invoice_id",
        [a.from.toLowerCase(), a.nonce],
      )
    ).map((row) => row.invoice_id);

  it("writes a row only for an invoice the rail holds bound, and deletes the authorization's others", async () => {
    const a = authorization(10);
    // Refused before the rail bound it (the terms refused, the binding failed): never served, not written.
    await deposit("inv_unbound", null);
    await markUnsentOwed(db, chain, a, { ...owed, invoiceId: "inv_unbound" });
    expect(await rowsOf(a)).toEqual([]);
    await deposit("inv_first", a);
    await markUnsentOwed(db, chain, a, { ...owed, invoiceId: "inv_first" });
    expect(await rowsOf(a)).toEqual(["inv_first"]);
    // The block its verify read the nonce unused at, where the search for its transfer starts (scheme.ts).
    const [kept] = await db.query<{ verified_block: string | null }>(
      "SELECT verified_block::text FROM x402_unsent_owed WHERE invoice_id = 'inv_first'",
    );
    expect(kept?.verified_block).toBe("41");
    // Another authorization's row, its invoice bound, is not this one's to delete.
    const other = authorization(11);
    await deposit("inv_other", other);
    await markUnsentOwed(db, chain, other, { ...owed, invoiceId: "inv_other" });
    // The same payment refused again: its new invoice takes the binding over, the first takes its own nonce back
    // (adapters/evm authorizations.ts bindTransfer), and its row, never served now, goes.
    await db.query(
      "UPDATE evm_deposits SET auth_nonce = 'own:inv_first', auth_from = NULL WHERE reference = $1",
      ["inv_first"],
    );
    await deposit("inv_second", a);
    await markUnsentOwed(db, chain, a, { ...owed, invoiceId: "inv_second" });
    expect(await rowsOf(a)).toEqual(["inv_second"]);
    // Retried (its answer lost): one row still.
    await markUnsentOwed(db, chain, a, { ...owed, invoiceId: "inv_second" });
    expect(await rowsOf(a)).toEqual(["inv_second"]);
    expect(await rowsOf(other)).toEqual(["inv_other"]);
  });
});
