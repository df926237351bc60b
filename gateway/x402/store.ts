// The gateway's record of x402 authorizations (migration 0021): the claim that makes one authorization pay at most
// once, and what became of it. Every statement names the chain, token, payer and nonce.
import type { Hex } from "viem";
import type { Db } from "../db/index.ts";
import type { X402Chain } from "./chains.ts";
import type { KnownOfRow } from "./spends.ts";
import type { Eip3009Authorization } from "./verify.ts";

/** An authorization's row key (chain_id, token, payer, nonce), as every statement names it: lower case. */
export const keyOf = (
  chain: X402Chain,
  a: Pick<Eip3009Authorization, "from" | "nonce">,
): readonly [number, string, string, string] => [
  chain.chainId,
  chain.token.toLowerCase(),
  a.from.toLowerCase(),
  a.nonce.toLowerCase(),
];

/** Whether the authorization is already claimed (by any payment, any tenant, any process). */
export async function isClaimed(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
): Promise<boolean> {
  const rows = await db.query(
    "SELECT 1 FROM x402_authorizations WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4",
    keyOf(chain, authorization),
  );
  return rows.length > 0;
}

/**
 * Whether the authorization's claim failed as a nonce already used (`authorization_used`): recorded so only once the
 * gateway itself read the nonce spent (settle.ts, batch.ts concludeItem), whatever a node behind reads now.
 */
export async function seenSpent(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
): Promise<boolean> {
  const rows = await db.query(
    `SELECT 1 FROM x402_authorizations
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4
       AND status = 'failed' AND failure = 'authorization_used'`,
    keyOf(chain, authorization),
  );
  return rows.length > 0;
}

/** Who is credited with a payment: a tenant's account. */
export type CreditTarget = {
  readonly tenantId: string;
  readonly accountId: string;
  /** A paywall's split of what is paid (PricedResource.split): carried by the invoice the payment is booked as. */
  readonly split?: readonly { readonly accountId: string; readonly basisPoints: number }[];
};

/**
 * Claims the authorization for `credit`, not weighed against the payer's balance (the facilitator's, which settles
 * before anything is served): true when this call took it, false when it was taken before. The payer's row of
 * x402_payer_holds is locked first, as claims-batch.ts does: a claim of the payer there, weighing what the payer's
 * payments hold, never sees one made meanwhile.
 */
export async function claim(
  db: Db,
  chain: X402Chain,
  authorization: Eip3009Authorization,
  credit: CreditTarget,
): Promise<boolean> {
  const rows = await db.query(
    `WITH locked AS (
       INSERT INTO x402_payer_holds AS h (chain_id, token, payer) VALUES ($1::bigint, $2::text, $3::text)
       ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held
       RETURNING 1
     )
     INSERT INTO x402_authorizations (chain_id, token, payer, nonce, tenant_id, account_id, amount, valid_before)
     SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, $7::numeric, $8::numeric FROM locked
     ON CONFLICT (chain_id, token, payer, nonce) DO NOTHING
     RETURNING 1`,
    [
      ...keyOf(chain, authorization),
      credit.tenantId,
      credit.accountId,
      authorization.value.toString(),
      authorization.validBefore.toString(),
    ],
  );
  return rows.length === 1;
}

/**
 * Whose claim `release` gives back: the invoice the caller bound it to (`record` with `invoiceId`), or null for a
 * claim the caller bound to no invoice yet.
 */
export type ClaimOwner = { readonly invoiceId: string | null };

/**
 * Gives the caller's claim back while nothing was sent: the same authorization may come again. Only the claim
 * bound to `owner.invoiceId` goes: a release retried after its first DELETE went through (its answer lost) must not
 * delete the claim another payment of the same authorization took a moment later, bound to another invoice or to
 * none yet. A claim bound to no invoice cannot be told from another such claim (nothing in the row is the
 * caller's alone), so a retried release of one (settle.ts bookInvoice, its invoice not made) may still take a fresh
 * unbound claim; closing that needs claim() to hand back an id of the claim. True when a claim was deleted.
 */
export async function release(
  db: Db,
  chain: X402Chain,
  authorization: Eip3009Authorization,
  owner: ClaimOwner,
): Promise<boolean> {
  const rows = await db.query(
    `DELETE FROM x402_authorizations
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4 AND status = 'claimed' AND tx_hash IS NULL
       AND invoice_id IS NOT DISTINCT FROM $5
     RETURNING 1`,
    [...keyOf(chain, authorization), owner.invoiceId],
  );
  return rows.length === 1;
}

/**
 * Records what became of a claimed authorization. `spentBlock`: the block by which its value had left the payer's
 * balance (its transaction's, or one no earlier when another spent it), for the claims of the payer weighed against
 * a balance read before (claims-batch.ts).
 */
export async function record(
  db: Db,
  chain: X402Chain,
  authorization: Eip3009Authorization,
  change: {
    status: "claimed" | "submitted" | "settled" | "failed";
    invoiceId?: string;
    txHash?: string;
    failure?: string;
    spentBlock?: bigint;
    /** The transaction that spent it when not `txHash`, ours: another's copy of it (spends.ts spentByAnother). */
    spentTxHash?: string;
    /** A block the token said its nonce was unused at, after ours did not spend it (spends.ts unspentByOurs). */
    unusedBlock?: bigint;
  },
): Promise<void> {
  await db.query(
    `UPDATE x402_authorizations
     SET status = $5, invoice_id = coalesce($6, invoice_id), tx_hash = coalesce($7, tx_hash),
         failure = coalesce($8, failure), spent_block = coalesce($9, spent_block),
         spent_tx_hash = coalesce($10, spent_tx_hash), unused_block = greatest(unused_block, $11::bigint),
         updated_at = now()
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4`,
    [
      ...keyOf(chain, authorization),
      change.status,
      change.invoiceId ?? null,
      change.txHash ?? null,
      change.failure ?? null,
      change.spentBlock?.toString() ?? null,
      change.spentTxHash ?? null,
      change.unusedBlock?.toString() ?? null,
    ],
  );
}

/**
 * Keeps the latest block the token said a `submitted` authorization's nonce was unused at (unspentByOurs open: one
 * with the chain's confirmations, which a reorganisation does not undo): the next reading searches for a copy from the
 * block after it. Never moves it back.
 */
export async function recordUnusedAt(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
  block: bigint,
): Promise<void> {
  await db.query(
    `UPDATE x402_authorizations SET unused_block = greatest(unused_block, $5::bigint)
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4 AND status = 'submitted'`,
    [...keyOf(chain, authorization), block.toString()],
  );
}

/**
 * Names the batch the claims are about to be sent in (`batchKey`, the key batch.ts hands the rail), each claim bound
 * to its invoice and not sent yet: written before the rail sends, so that a settler that dies between the send and
 * its record leaves rows that name their send (reconcile.ts adopts them from the rail's send journal, and the
 * send-gas pass leaves the batch's gas to x402). One statement: every row of a batch is marked, or none. Returns the
 * invoices of the claims marked: a claim no longer as its caller left it (given back, sent, bound to another invoice)
 * is not, and a batch sent with fewer rows marked than items would be adopted, and its gas split, over only some.
 */
export async function sendingInBatch(
  db: Db,
  chain: X402Chain,
  batchKey: string,
  claims: readonly { readonly authorization: Eip3009Authorization; readonly invoiceId: string }[],
): Promise<string[]> {
  const rows = await db.query<{ invoice_id: string }>(
    `UPDATE x402_authorizations a SET batch_key = $3, updated_at = now()
     FROM unnest($4::text[], $5::text[], $6::text[]) AS c (payer, nonce, invoice_id)
     WHERE a.chain_id = $1 AND a.token = $2 AND a.payer = c.payer AND a.nonce = c.nonce
       AND a.invoice_id = c.invoice_id AND a.status = 'claimed' AND a.tx_hash IS NULL
     RETURNING a.invoice_id`,
    [
      chain.chainId,
      chain.token.toLowerCase(),
      batchKey,
      claims.map((c) => c.authorization.from.toLowerCase()),
      claims.map((c) => c.authorization.nonce.toLowerCase()),
      claims.map((c) => c.invoiceId),
    ],
  );
  return rows.map((row) => row.invoice_id);
}

/**
 * Joins `d`, the deposit row of x402 row `a`'s invoice while it is still bound to `a`'s payer and nonce (by its
 * key), whose auth_to is the `to` the invoice was bound with (evm migration 0023): none when the invoice was bound to
 * another payer or nonce since, or never, which reads as the hot wallet of now (spends.ts boundTo).
 */
export const boundDepositJoinSql = `LEFT JOIN evm_deposits d ON d.chain_id = a.chain_id AND d.token = a.token
       AND d.reference = a.invoice_id AND d.auth_from = a.payer AND d.auth_nonce = a.nonce`;

/** What the gateway recorded of an authorization whose transaction was sent: for answering a retry. */
export type SentAuthorization = {
  /** `submitted`: sent, its outcome not recorded (not mined in time, or recording it failed). */
  readonly status: "submitted" | "settled" | "failed";
  readonly tenantId: string;
  readonly accountId: string;
  readonly amount: bigint;
  readonly txHash: string;
  /** The transaction that spent it when not txHash (ours): another's copy of it, which paid the hot wallet. */
  readonly spentTxHash: string | null;
  /** Why it failed (`failed`): as its settler, or reconciliation, recorded it. */
  readonly failure: string | null;
  /** What the search for a copy of it starts and ends at (spends.ts spenderOfSend): its validBefore, unused_block. */
  readonly known: KnownOfRow;
  /**
   * The `to` its invoice was bound with (evm_deposits.auth_to, evm migration 0023): the hot wallet when it was sent,
   * which a key rotation since leaves behind; null when none is recorded, read as the hot wallet of now.
   */
  readonly boundTo: Hex | null;
};

/** A row's valid_before and unused_block as the search for a copy takes them (spends.ts KnownOfRow). */
const knownOf = (row: { valid_before: string | null; unused_block: string | null }): KnownOfRow => ({
  validBefore: row.valid_before === null ? null : BigInt(row.valid_before),
  unusedAt: row.unused_block === null ? null : BigInt(row.unused_block),
});

/** The record of the authorization when its transaction was sent, or null. */
export async function sentAuthorization(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
): Promise<SentAuthorization | null> {
  const [row] = await db.query<{
    status: "submitted" | "settled" | "failed";
    tenant_id: string;
    account_id: string;
    amount: string;
    tx_hash: string;
    spent_tx_hash: string | null;
    failure: string | null;
    valid_before: string | null;
    unused_block: string | null;
    auth_to: Hex | null;
  }>(
    `SELECT a.status, a.tenant_id, a.account_id, a.amount::text AS amount, a.tx_hash, a.spent_tx_hash, a.failure,
            a.valid_before::text AS valid_before, a.unused_block::text AS unused_block, d.auth_to
     FROM x402_authorizations a
     ${boundDepositJoinSql}
     WHERE a.chain_id = $1 AND a.token = $2 AND a.payer = $3 AND a.nonce = $4
       AND a.status IN ('submitted', 'settled', 'failed') AND a.tx_hash IS NOT NULL`,
    keyOf(chain, authorization),
  );
  if (row === undefined) return null;
  return {
    status: row.status,
    tenantId: row.tenant_id,
    accountId: row.account_id,
    amount: BigInt(row.amount),
    txHash: row.tx_hash,
    spentTxHash: row.spent_tx_hash,
    failure: row.failure,
    known: knownOf(row),
    boundTo: row.auth_to,
  };
}

/**
 * Marks the authorization's request owed at `paywallId`: the payer was answered 402 while its settlement was in
 * flight. Once the authorization is spent, the same payment sent again there is served once (owedAt, takeOwed).
 */
export async function markOwed(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
  paywallId: string,
): Promise<void> {
  await db.query(
    `UPDATE x402_authorizations SET owed_paywall = $5
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4`,
    [...keyOf(chain, authorization), paywallId],
  );
}

/** What the gateway needs to know of an owed request, and whose it is. */
export type OwedTo = { readonly paywallId: string; readonly tenantId: string };

/**
 * Whether the authorization's request is owed at this paywall, of this tenant, for this amount, and its transaction
 * was sent: the transaction that spent it when another's copy did (spent_tx_hash), else the row's own transaction hash
 * (the one first sent), what the search for a copy of it starts and ends at (`known`), and the `to` its invoice was
 * bound with (`boundTo`: evm_deposits.auth_to, evm migration 0023; null when none is recorded, read as the hot wallet
 * of now), or null. Not by account: the paywall's account may have changed since it was paid (the row credited the one
 * it had then). Not the payment's own `to` either: the payer signs that, and a payer's second authorization of the
 * same nonce to an address of its own, mined first, would read as paying us.
 */
export async function owedAt(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce" | "value">,
  owed: OwedTo,
): Promise<{ readonly txHash: string; readonly known: KnownOfRow; readonly boundTo: Hex | null } | null> {
  const [row] = await db.query<{
    tx_hash: string;
    valid_before: string | null;
    unused_block: string | null;
    auth_to: Hex | null;
  }>(
    `SELECT coalesce(a.spent_tx_hash, a.tx_hash) AS tx_hash, a.valid_before::text AS valid_before,
            a.unused_block::text AS unused_block, d.auth_to
     FROM x402_authorizations a
     ${boundDepositJoinSql}
     WHERE a.chain_id = $1 AND a.token = $2 AND a.payer = $3 AND a.nonce = $4 AND a.owed_paywall = $5
       AND a.tenant_id = $6 AND a.amount = $7::numeric
       AND a.status IN ('submitted', 'settled') AND a.tx_hash IS NOT NULL`,
    [...keyOf(chain, authorization), owed.paywallId, owed.tenantId, authorization.value.toString()],
  );
  return row === undefined ? null : { txHash: row.tx_hash, known: knownOf(row), boundTo: row.auth_to };
}

/** Takes the request owed at the paywall (one caller of many at once): true when this call took it. */
export async function takeOwed(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce">,
  paywallId: string,
): Promise<boolean> {
  const rows = await db.query(
    `UPDATE x402_authorizations SET owed_paywall = NULL
     WHERE chain_id = $1 AND token = $2 AND payer = $3 AND nonce = $4 AND owed_paywall = $5
     RETURNING 1`,
    [...keyOf(chain, authorization), paywallId],
  );
  return rows.length === 1;
}

/**
 * Marks the request owed at `owed.paywallId` whose settlement through `invoiceId` the rail refused before sending it
 * (migration 0070): its claim was given back, but the invoice stays bound to the payer's nonce and is credited if
 * whoever holds the authorization mines it. Once it is paid so, the same payment sent again there is served once
 * (unsentOwedAt, takeUnsentOwed). Only while the rail holds the invoice bound (evm_deposits), which it does before it
 * answers the refusal or never (the terms refused, the binding failed): a row of an invoice never bound is never
 * served. The rows of the authorization's other invoices the rail holds bound no more go in the same statement: the
 * same payment refused again books this one, which took the binding over from them, and the rail never gives it back
 * (adapters/evm authorizations.ts bindTransfer), so none of them can be served again. Before, every refusal wrote a
 * row, and none was ever deleted. What is left is one row per authorization at most beside its rows taken (served),
 * each with an invoice and its deposit row the rail keeps as long. `owed.verifiedBlock`: the block the verify that took
 * the payment read its nonce unused at (the simulation's block, Taken.atBlock), or null without one (verified_block:
 * where the search for the authorization's transfer starts, migration 0072).
 */
export async function markUnsentOwed(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce" | "value">,
  owed: OwedTo & { readonly invoiceId: string; readonly verifiedBlock: bigint | null },
): Promise<void> {
  await db.query(
    `WITH given_up AS (
       DELETE FROM x402_unsent_owed o
       WHERE o.chain_id = $1 AND o.token = $2 AND o.payer = $3 AND o.nonce = $4 AND o.invoice_id <> $5
         AND NOT EXISTS (SELECT 1 FROM evm_deposits d
                         WHERE d.chain_id = o.chain_id AND d.token = o.token AND d.reference = o.invoice_id
                           AND d.auth_from = o.payer AND d.auth_nonce = o.nonce)
     )
     INSERT INTO x402_unsent_owed
       (chain_id, token, payer, nonce, invoice_id, paywall_id, tenant_id, amount, verified_block)
     SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::numeric, $9::bigint
     WHERE EXISTS (SELECT 1 FROM evm_deposits d
                   WHERE d.chain_id = $1 AND d.token = $2 AND d.reference = $5 AND d.auth_from = $3
                     AND d.auth_nonce = $4)
     ON CONFLICT (invoice_id) DO NOTHING`,
    [
      ...keyOf(chain, authorization),
      owed.invoiceId,
      owed.paywallId,
      owed.tenantId,
      authorization.value.toString(),
      owed.verifiedBlock?.toString() ?? null,
    ],
  );
}

/**
 * An invoice booked for an authorization whose settlement the rail refused before sending it, while the rail binds it
 * to the payer and nonce (evm_deposits: the deposit watcher credits only that one). A paid one comes with each
 * transaction its receipts name (the deposit watcher's evidence) but those a reorg took back (a reversal of the receipt
 * that stands): the caller reads which of them spent this very authorization to the wallet it was bound with
 * (spends.ts unsentSpender). One not paid yet comes once, with no transaction, while its watch lasts: the
 * authorization may be mined, or mined and not credited yet. `verifiedBlock`: the block its verify read the nonce
 * unused at (markUnsentOwed), or null. `boundTo`: the `to` the invoice was bound with (evm_deposits.auth_to, evm
 * migration 0023), the wallet the authorization pays; null when none is recorded (a binding before 0023 that no send
 * named), read as the hot wallet of now.
 */
export type UnsentInvoice = {
  readonly invoiceId: string;
  readonly paid: boolean;
  readonly txHash: string | null;
  readonly verifiedBlock: bigint | null;
  readonly boundTo: Hex | null;
};

/**
 * What unsentOwedAt and unsentBoundTo read of invoice `i`, bound by deposit row `d` (joined by the caller): whether it
 * is paid, each transaction its standing receipts name, and only while it is paid or still watched.
 */
const unsentInvoiceSql = {
  receipts: `LEFT JOIN invoice_receipts r ON i.status = 'paid' AND r.invoice_id = i.id
       AND r.evidence->>'txHash' IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM invoice_reversals v
                       WHERE v.invoice_id = r.invoice_id AND v.receipt = r.key AND v.reinstated_at IS NULL)`,
  watched: "(i.status = 'paid' OR d.watch_until > now())",
  order: "ORDER BY r.received_at, r.key",
} as const;

type UnsentInvoiceRow = {
  invoice_id: string;
  paid: boolean;
  tx_hash: string | null;
  verified_block: string | null;
  auth_to: Hex | null;
};

const unsentInvoiceOf = (row: UnsentInvoiceRow): UnsentInvoice => ({
  invoiceId: row.invoice_id,
  paid: row.paid,
  txHash: row.tx_hash,
  verifiedBlock: row.verified_block === null ? null : BigInt(row.verified_block),
  boundTo: row.auth_to,
});

/**
 * The invoices of the authorization's requests owed at this paywall, of this tenant, for this amount, whose settlement
 * the rail refused before sending (markUnsentOwed), while each is the one the rail binds to the payer and nonce (an
 * invoice never bound, or whose binding the same payment refused again took over, is never paid by the
 * authorization): UnsentInvoice's. Empty when none is.
 */
export async function unsentOwedAt(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce" | "value">,
  owed: OwedTo,
): Promise<UnsentInvoice[]> {
  const rows = await db.query<UnsentInvoiceRow>(
    `SELECT o.invoice_id, i.status = 'paid' AS paid, r.evidence->>'txHash' AS tx_hash,
            o.verified_block::text AS verified_block, d.auth_to
     FROM x402_unsent_owed o
     JOIN invoices i ON i.id = o.invoice_id AND i.tenant_id = o.tenant_id
     JOIN evm_deposits d ON d.chain_id = $1 AND d.token = $2 AND d.reference = o.invoice_id
       AND d.auth_from = o.payer AND d.auth_nonce = o.nonce
     ${unsentInvoiceSql.receipts}
     WHERE o.chain_id = $1 AND o.token = $2 AND o.payer = $3 AND o.nonce = $4 AND o.paywall_id = $5
       AND o.tenant_id = $6 AND o.amount = $7::numeric AND o.owed AND ${unsentInvoiceSql.watched}
     ${unsentInvoiceSql.order}`,
    [...keyOf(chain, authorization), owed.paywallId, owed.tenantId, authorization.value.toString()],
  );
  return rows.map(unsentInvoiceOf);
}

/**
 * The facilitator's reading of unsentOwedAt: the invoice of `credit`'s account the rail binds to the authorization's
 * payer and nonce for its value, booked by a settlement the rail refused before sending it (settle.ts
 * unsentInvoiceId), as UnsentInvoice's (no verified block: none is kept). No row of its own marks it: the
 * facilitator answers a settle retried the same for as long as it is retried (as priorSettlement answers one sent),
 * where a paywall serves a request owed once, so the rail's binding is all there is to read. An invoice the
 * authorization's claim still holds comes too: a settle in flight is answered by what the chain and the watcher say of
 * its transfer (pending, or settled by it), as a retry of it is once sent; and a claim left `claimed` with no
 * transaction for good (its give-back failed after the rail's refusal, or its submit threw after the rail bound it) is
 * answered by nothing else (sentAuthorization needs a transaction, reconciliation adopts only a send the rail
 * journaled). Before, such an invoice was left out, and a payment mined to it and credited was refused as a nonce
 * already used for good: the payer signed anew and paid twice. Empty when none is.
 */
export async function unsentBoundTo(
  db: Db,
  chain: X402Chain,
  authorization: Pick<Eip3009Authorization, "from" | "nonce" | "value">,
  credit: Pick<CreditTarget, "tenantId" | "accountId">,
): Promise<UnsentInvoice[]> {
  const rows = await db.query<UnsentInvoiceRow>(
    `SELECT i.id AS invoice_id, i.status = 'paid' AS paid, r.evidence->>'txHash' AS tx_hash,
            NULL::text AS verified_block, d.auth_to
     FROM evm_deposits d
     JOIN invoices i ON i.id = d.reference AND i.tenant_id = $5 AND i.account_id = $6
     ${unsentInvoiceSql.receipts}
     WHERE d.chain_id = $1 AND d.token = $2 AND d.auth_from = $3 AND d.auth_nonce = $4
       AND d.amount = $7::numeric AND ${unsentInvoiceSql.watched}
     ${unsentInvoiceSql.order}`,
    [...keyOf(chain, authorization), credit.tenantId, credit.accountId, authorization.value.toString()],
  );
  return rows.map(unsentInvoiceOf);
}

/**
 * Takes the request owed through `invoiceId` (one caller of many at once), or gives it back (`owed`: true) when it
 * was not served: true when this call changed it.
 */
export async function takeUnsentOwed(db: Db, invoiceId: string, owed = false): Promise<boolean> {
  const rows = await db.query(
    "UPDATE x402_unsent_owed SET owed = $2 WHERE invoice_id = $1 AND owed = NOT $2::boolean RETURNING 1",
    [invoiceId, owed],
  );
  return rows.length === 1;
}
