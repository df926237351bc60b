// Group commit (core/group-commit.ts) for the x402 authorization claims of concurrent requests: while one statement
// is in flight the next batch gathers, and each batch is one INSERT … ON CONFLICT DO NOTHING RETURNING, with the same
// semantics row by row as store.ts `claim` (the key (chain_id, token, payer, nonce), lower case). Every caller gets
// its own answer; a key asked twice in one batch is claimed by its first caller only. A failed statement fails every
// caller of its batch.
import { groupCommit } from "../../core/group-commit.ts";
import type { Db } from "../db/index.ts";
import type { X402Chain } from "./chains.ts";
import type { CreditTarget } from "./store.ts";
import type { Eip3009Authorization } from "./verify.ts";

/** The most rows one batched statement carries (8 parameters each for a claim). */
export const maxClaimBatchRows = 256;

type Key = readonly [number, string, string, string];
const keyOf = (chain: X402Chain, a: Pick<Eip3009Authorization, "from" | "nonce">): Key => [
  chain.chainId,
  chain.token.toLowerCase(),
  a.from.toLowerCase(),
  a.nonce.toLowerCase(),
];
const textOf = (key: readonly unknown[]) => key.join("|");

export type ClaimRequest = {
  readonly chain: X402Chain;
  readonly authorization: Eip3009Authorization;
  readonly credit: CreditTarget;
};

/** Claims each authorization for its credit: one INSERT; true for the caller that took it, false otherwise. */
export async function claimAll(db: Db, requests: readonly ClaimRequest[]): Promise<boolean[]> {
  const first = new Map<string, number>();
  requests.forEach((r, i) => {
    const text = textOf(keyOf(r.chain, r.authorization));
    if (!first.has(text)) first.set(text, i);
  });
  // In key order: two processes inserting overlapping keys then wait for each other in one order, never a deadlock.
  const unique = [...first.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, i]) => i);
  const params: unknown[] = [];
  const values = unique.map((i, row) => {
    const r = requests[i]!;
    params.push(
      ...keyOf(r.chain, r.authorization),
      r.credit.tenantId,
      r.credit.accountId,
      r.authorization.value.toString(),
      r.authorization.validBefore.toString(),
    );
    return `(${Array.from({ length: 8 }, (_, c) => `$${8 * row + c + 1}`).join(", ")})`;
  });
  const rows = await db.query<{ chain_id: string; token: string; payer: string; nonce: string }>(
    `INSERT INTO x402_authorizations (chain_id, token, payer, nonce, tenant_id, account_id, amount, valid_before)
     VALUES ${values.join(", ")}
     ON CONFLICT (chain_id, token, payer, nonce) DO NOTHING
     RETURNING chain_id::text AS chain_id, token, payer, nonce`,
    params,
  );
  const taken = new Set(rows.map((row) => textOf([row.chain_id, row.token, row.payer, row.nonce])));
  return requests.map((r, i) => {
    const text = textOf(keyOf(r.chain, r.authorization));
    return first.get(text) === i && taken.has(text);
  });
}

/** The batched `claim` of one database. */
export function createClaimBatcher(db: Db) {
  const claim = groupCommit((requests: readonly ClaimRequest[]) => claimAll(db, requests), maxClaimBatchRows);
  return {
    claim: (chain: X402Chain, authorization: Eip3009Authorization, credit: CreditTarget) =>
      claim({ chain, authorization, credit }),
  };
}
