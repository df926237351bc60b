// Group commit (core/group-commit.ts) for the paywall's x402 claims: while one batch is in flight the next gathers,
// and each batch is one statement, x402_claim_weighed (migration 0035), that claims every authorization not taken
// before and weighs each against its payer's balance, less what the payer's other payments hold — in the database, so
// that every gateway process weighs the same holds. Every caller gets its own answer; a key asked twice in one batch
// is claimed by its first ask only; a payment its payer's balance cannot cover is claimed by nobody (nothing to give
// back). A failed statement fails every caller of its batch.
//
// What a payment holds of its payer's balance: its amount while it is pending (claimed or submitted, not lapsed), kept
// per payer in x402_payer_holds by triggers; and, against a balance read at block B, its amount when it was spent in
// B or after (spent_block), which that balance may not show. The balance and its block come from the simulation
// (simulate-batch.ts), the spent blocks from the settlers' receipts.
import { groupCommit } from "../../core/group-commit.ts";
import type { Db } from "../db/index.ts";
import type { X402Chain } from "./chains.ts";
import { type CreditTarget, keyOf } from "./store.ts";
import type { BalanceReading, Eip3009Authorization } from "./verify.ts";

/** The most claims one batch carries. */
export const maxClaimBatchRows = 256;

/**
 * How long after its authorization's validBefore (by this process's clock) a pending payment stops holding its
 * payer's balance: the token compares validBefore with the block's time, which may run behind this clock.
 */
export const lapseAfterValidBeforeS = 60n;

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

/**
 * Claims each authorization for its credit when it is not taken and its payer's balance covers it: one statement,
 * x402_claim_weighed (migration 0035). `nowS`: this process's clock in seconds, which lapses pending payments
 * (lapseAfterValidBeforeS).
 */
export async function claimAll(
  db: Db,
  requests: readonly ClaimRequest[],
  nowS: bigint,
): Promise<ClaimAnswer[]> {
  if (requests.length === 0) return [];
  const keys = requests.map((r) => keyOf(r.chain, r.authorization));
  const rows = await db.query<{
    answer: ClaimAnswer["kind"];
    short_balance: string | null;
    short_held: string | null;
  }>(
    `SELECT answer, short_balance::text AS short_balance, short_held::text AS short_held
     FROM x402_claim_weighed($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
       $7::numeric[], $8::numeric[], $9::numeric[], $10::bigint[], $11::numeric, $12::numeric)`,
    [
      keys.map((k) => k[0]),
      keys.map((k) => k[1]),
      keys.map((k) => k[2]),
      keys.map((k) => k[3]),
      requests.map((r) => r.credit.tenantId),
      requests.map((r) => r.credit.accountId),
      requests.map((r) => r.authorization.value.toString()),
      requests.map((r) => r.authorization.validBefore.toString()),
      requests.map((r) => r.balance?.amount.toString() ?? null),
      requests.map((r) => r.balance?.atBlock.toString() ?? "0"),
      lapseAfterValidBeforeS.toString(),
      nowS.toString(),
    ],
  );
  if (rows.length !== requests.length)
    throw new RangeError(`${requests.length} claims asked, ${rows.length} answered`);
  return rows.map((row): ClaimAnswer => {
    if (row.answer === "short")
      return { kind: "short", balance: BigInt(row.short_balance!), held: BigInt(row.short_held!) };
    return { kind: row.answer };
  });
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
