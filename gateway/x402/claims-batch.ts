// Group commit (core/group-commit.ts) for the paywall's x402 claims: while one batch is in flight the next gathers,
// and each batch is one transaction that claims every authorization not taken before and weighs each against its
// payer's balance, less what the payer's other payments hold — in the database (migration 0035), so that every
// gateway process weighs the same holds. Every caller gets its own answer; a key asked twice in one batch is claimed
// by its first caller only; a payment its payer's balance cannot cover is claimed by nobody (nothing to give back).
// A failed transaction fails every caller of its batch.
//
// The transaction, in order:
// 1. locks each payer's row of x402_payer_holds (made if missing), in key order, reading what its pending payments
//    hold. Every writer of a claim takes that lock first (store.ts claim too), and the table's trigger takes it for
//    every change of a payer's rows: from here until the commit, nothing the payer's payments hold changes;
// 2. reads which keys are taken already, and the payer's payments spent at or after the block each balance was read
//    at (the balance may not show them);
// 3. weighs each payment in the batch's order (holds of the batch's own earlier payments included); a payer short
//    of room has its lapsed pending payments let go (hold_lapsed) and is weighed again;
// 4. inserts the claims weighed in (the trigger adds them to the payer's holds).
import { groupCommit } from "../../core/group-commit.ts";
import type { Db, Sql } from "../db/index.ts";
import type { X402Chain } from "./chains.ts";
import type { CreditTarget } from "./store.ts";
import type { BalanceReading, Eip3009Authorization } from "./verify.ts";

/** The most claims one batch carries. */
export const maxClaimBatchRows = 256;

/**
 * How long after its authorization's validBefore (by this process's clock) a pending payment stops holding its
 * payer's balance: the token compares validBefore with the block's time, which may run behind this clock.
 */
export const lapseAfterValidBeforeS = 60n;

type Key = readonly [number, string, string, string];
const keyOf = (chain: X402Chain, a: Pick<Eip3009Authorization, "from" | "nonce">): Key => [
  chain.chainId,
  chain.token.toLowerCase(),
  a.from.toLowerCase(),
  a.nonce.toLowerCase(),
];
const textOf = (key: readonly unknown[]) => key.join("|");
const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export type ClaimRequest = {
  readonly chain: X402Chain;
  readonly authorization: Eip3009Authorization;
  readonly credit: CreditTarget;
  /** The payer's balance to weigh the payment against; null: not weighed (the payment still holds its amount). */
  readonly balance: BalanceReading | null;
};

/** A claim's answer: taken by this caller; taken before (by anyone); or refused, the payer's balance short. */
export type ClaimAnswer =
  | { readonly kind: "claimed" }
  | { readonly kind: "taken" }
  | { readonly kind: "short"; readonly balance: bigint; readonly held: bigint };

/** One payer (chain, token, address) of a batch, as read under its lock. */
type Payer = {
  /** What its pending payments hold (the batch's not included). */
  held: bigint;
  /** Its payments spent at or after the earliest block a balance of it in the batch was read at. */
  readonly spent: { readonly block: bigint; readonly amount: bigint }[];
};

/**
 * Claims each authorization for its credit when it is not taken and its payer's balance covers it: one transaction.
 * `nowS`: this process's clock in seconds, which lapses pending payments (lapseAfterValidBeforeS).
 */
export async function claimAll(
  db: Db,
  requests: readonly ClaimRequest[],
  nowS: bigint,
): Promise<ClaimAnswer[]> {
  if (requests.length === 0) return [];
  const keys = requests.map((r) => keyOf(r.chain, r.authorization));
  const keyTexts = keys.map(textOf);
  const payerTexts = keys.map((key) => textOf(key.slice(0, 3)));
  return await db.transaction(async (tx) => {
    const payers = await lockPayers(tx, keys, payerTexts);
    const taken = await readTakenAndSpent(tx, requests, keys, payerTexts, payers);
    let answers = weigh(requests, keyTexts, payerTexts, payers, taken);
    const short = [...new Set(payerTexts.filter((_, i) => answers[i]!.kind === "short"))];
    if (short.length > 0 && (await lapse(tx, short, payers, nowS)))
      answers = weigh(requests, keyTexts, payerTexts, payers, taken);
    const inserted = await insertClaims(tx, requests, keys, answers);
    // A key inserted meanwhile by a writer that does not lock its payer first (none does: store.ts claim locks it)
    // is taken all the same.
    return answers.map((answer, i) =>
      answer.kind === "claimed" && !inserted.has(keyTexts[i]!) ? { kind: "taken" as const } : answer,
    );
  });
}

/** Locks the batch's payers' rows of x402_payer_holds in key order (made when missing): what each payer holds. */
async function lockPayers(
  tx: Sql,
  keys: readonly Key[],
  payerTexts: readonly string[],
): Promise<Map<string, Payer>> {
  const unique = new Map(payerTexts.map((text, i) => [text, keys[i]!] as const));
  // In key order: two processes locking overlapping payers wait for each other in one order, never a deadlock.
  const sorted = [...unique.entries()].sort(([a], [b]) => order(a, b)).map(([, key]) => key);
  const rows = await tx.query<{ chain_id: string; token: string; payer: string; held: string }>(
    `INSERT INTO x402_payer_holds AS h (chain_id, token, payer)
     SELECT chain_id, token, payer
     FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS k (chain_id, token, payer, n)
     ORDER BY n
     ON CONFLICT (chain_id, token, payer) DO UPDATE SET held = h.held
     RETURNING chain_id::text AS chain_id, token, payer, held::text AS held`,
    [sorted.map((k) => k[0]), sorted.map((k) => k[1]), sorted.map((k) => k[2])],
  );
  return new Map(
    rows.map((row) => [textOf([row.chain_id, row.token, row.payer]), { held: BigInt(row.held), spent: [] }]),
  );
}

/**
 * The keys of the batch claimed before, by anyone; and into each payer's `spent`, its payments spent at or after
 * the earliest block one of its balances in the batch was read at. Read after the payers' locks: nothing of theirs
 * changes until the commit.
 */
async function readTakenAndSpent(
  tx: Sql,
  requests: readonly ClaimRequest[],
  keys: readonly Key[],
  payerTexts: readonly string[],
  payers: Map<string, Payer>,
): Promise<Set<string>> {
  const fromBlock = new Map<string, { key: Key; block: bigint }>();
  requests.forEach((r, i) => {
    if (r.balance === null) return;
    const known = fromBlock.get(payerTexts[i]!);
    if (known === undefined || r.balance.atBlock < known.block)
      fromBlock.set(payerTexts[i]!, { key: keys[i]!, block: r.balance.atBlock });
  });
  const weighed = [...fromBlock.values()];
  const rows = await tx.query<{
    chain_id: string;
    token: string;
    payer: string;
    nonce: string | null;
    amount: string | null;
    block: string | null;
  }>(
    `SELECT chain_id::text AS chain_id, token, payer, nonce, NULL::text AS amount, NULL::text AS block
     FROM x402_authorizations
     WHERE (chain_id, token, payer, nonce) IN (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]))
     UNION ALL
     SELECT a.chain_id::text, a.token, a.payer, NULL, a.amount::text, a.spent_block::text
     FROM x402_authorizations a
     JOIN unnest($5::bigint[], $6::text[], $7::text[], $8::bigint[]) AS w (chain_id, token, payer, from_block)
       ON a.chain_id = w.chain_id AND a.token = w.token AND a.payer = w.payer AND a.spent_block >= w.from_block`,
    [
      keys.map((k) => k[0]),
      keys.map((k) => k[1]),
      keys.map((k) => k[2]),
      keys.map((k) => k[3]),
      weighed.map((w) => w.key[0]),
      weighed.map((w) => w.key[1]),
      weighed.map((w) => w.key[2]),
      weighed.map((w) => w.block.toString()),
    ],
  );
  const taken = new Set<string>();
  for (const row of rows) {
    if (row.nonce !== null) taken.add(textOf([row.chain_id, row.token, row.payer, row.nonce]));
    else
      payers
        .get(textOf([row.chain_id, row.token, row.payer]))
        ?.spent.push({ block: BigInt(row.block!), amount: BigInt(row.amount!) });
  }
  return taken;
}

/**
 * Each request's answer, in the batch's order: taken when its key was claimed before or earlier in the batch;
 * short when its balance, less what its payer's pending payments hold (the batch's claimed so far included) and
 * what was spent at or after the balance's block, is less than its amount; else claimed.
 */
function weigh(
  requests: readonly ClaimRequest[],
  keyTexts: readonly string[],
  payerTexts: readonly string[],
  payers: ReadonlyMap<string, Payer>,
  takenBefore: ReadonlySet<string>,
): ClaimAnswer[] {
  const held = new Map([...payers].map(([text, payer]) => [text, payer.held]));
  const taken = new Set(takenBefore);
  return requests.map((r, i): ClaimAnswer => {
    const key = keyTexts[i]!;
    if (taken.has(key)) return { kind: "taken" };
    const payerText = payerTexts[i]!;
    const pending = held.get(payerText) ?? 0n;
    const value = r.authorization.value;
    if (r.balance !== null) {
      let spent = 0n;
      for (const s of payers.get(payerText)?.spent ?? []) if (s.block >= r.balance.atBlock) spent += s.amount;
      if (r.balance.amount - pending - spent < value)
        return { kind: "short", balance: r.balance.amount, held: pending + spent };
    }
    held.set(payerText, pending + value);
    taken.add(key);
    return { kind: "claimed" };
  });
}

/**
 * Lets go the pending payments of these payers whose validBefore passed lapseAfterValidBeforeS ago by `nowS`: the
 * chain can no longer spend them, and a balance read since shows them if it did. A row another writer has locked
 * (its outcome being recorded) is left to it. Subtracts what was let go from the payers' holds; true when anything was.
 */
async function lapse(tx: Sql, payerTexts: readonly string[], payers: Map<string, Payer>, nowS: bigint) {
  const keys = payerTexts.map((text) => text.split("|"));
  const rows = await tx.query<{ chain_id: string; token: string; payer: string; amount: string }>(
    `UPDATE x402_authorizations a SET hold_lapsed = true
     WHERE (a.chain_id, a.token, a.payer, a.nonce) IN (
       SELECT p.chain_id, p.token, p.payer, p.nonce
       FROM x402_authorizations p
       JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS w (chain_id, token, payer)
         ON p.chain_id = w.chain_id AND p.token = w.token AND p.payer = w.payer
       WHERE p.status IN ('claimed', 'submitted') AND NOT p.hold_lapsed AND p.valid_before + $4::numeric <= $5::numeric
       FOR UPDATE OF p SKIP LOCKED)
     RETURNING a.chain_id::text AS chain_id, a.token, a.payer, a.amount::text AS amount`,
    [
      keys.map((k) => k[0]),
      keys.map((k) => k[1]),
      keys.map((k) => k[2]),
      lapseAfterValidBeforeS.toString(),
      nowS.toString(),
    ],
  );
  for (const row of rows) {
    const payer = payers.get(textOf([row.chain_id, row.token, row.payer]));
    if (payer !== undefined) payer.held -= BigInt(row.amount);
  }
  return rows.length > 0;
}

/** Inserts the claims weighed in, in key order; the keys inserted. */
async function insertClaims(
  tx: Sql,
  requests: readonly ClaimRequest[],
  keys: readonly Key[],
  answers: readonly ClaimAnswer[],
): Promise<Set<string>> {
  const claimed = requests
    .map((r, i) => ({ r, key: keys[i]!, text: textOf(keys[i]!) }))
    .filter((_, i) => answers[i]!.kind === "claimed")
    .sort((a, b) => order(a.text, b.text));
  if (claimed.length === 0) return new Set();
  const rows = await tx.query<{ chain_id: string; token: string; payer: string; nonce: string }>(
    `INSERT INTO x402_authorizations (chain_id, token, payer, nonce, tenant_id, account_id, amount, valid_before)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[],
       $8::numeric[])
     ON CONFLICT (chain_id, token, payer, nonce) DO NOTHING
     RETURNING chain_id::text AS chain_id, token, payer, nonce`,
    [
      claimed.map((c) => c.key[0]),
      claimed.map((c) => c.key[1]),
      claimed.map((c) => c.key[2]),
      claimed.map((c) => c.key[3]),
      claimed.map((c) => c.r.credit.tenantId),
      claimed.map((c) => c.r.credit.accountId),
      claimed.map((c) => c.r.authorization.value.toString()),
      claimed.map((c) => c.r.authorization.validBefore.toString()),
    ],
  );
  return new Set(rows.map((row) => textOf([row.chain_id, row.token, row.payer, row.nonce])));
}

/** The batched `claimAll` of one database; `nowS`, this process's clock in seconds. */
export function createClaimBatcher(db: Db, nowS: () => bigint) {
  const claim = groupCommit(
    (requests: readonly ClaimRequest[]) => claimAll(db, requests, nowS()),
    maxClaimBatchRows,
  );
  return {
    claim: (
      chain: X402Chain,
      authorization: Eip3009Authorization,
      credit: CreditTarget,
      balance: BalanceReading | null,
    ) => claim({ chain, authorization, credit, balance }),
  };
}
