// What a batch reads that the writer does not know yet: the transfers it names (and, for pending ones, what became
// of them) and the accounts it touches. The locked path reads under the clock lock, accounts FOR UPDATE; the
// pipelined path reads without locks and relies on the clock's token to tell it whether what it read still holds.
import type { Sql } from "../db/index.ts";
import { isSpentIdRow, selectAccounts, selectTransfersOrSpent } from "./store.ts";
import { TransferFlags, type TransferInput } from "./types.ts";
import type { WriterState } from "./writer-state.ts";

/** Reads the accounts among `ids` the writer does not know, in id order (the order every writer locks them in). */
export async function loadAccounts(
  w: WriterState,
  sql: Sql,
  ids: Iterable<bigint>,
  options: { forUpdate: boolean },
): Promise<void> {
  const missing: bigint[] = [];
  for (const id of ids) if (!w.known.accounts.has(id)) missing.push(id);
  if (missing.length === 0) return;
  const unique = [...new Set(missing)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const account of await selectAccounts(sql, unique, options)) w.known.accounts.set(account.id, account);
}

/**
 * Reads what a batch of transfers needs that is not in memory: transfers it names, their status, accounts.
 * `lookUpIds`: read the transfers' own ids too (the locked path; the pipelined one takes unknown ids for new).
 * `seq`: the pipelined batch that read them (tagged so they are dropped once it has committed), 0 when locked.
 */
export async function prefetch(
  w: WriterState,
  sql: Sql,
  requests: readonly (readonly TransferInput[])[],
  options: { forUpdate: boolean; lookUpIds: boolean },
  seq: number,
): Promise<void> {
  const transferIds = new Set<bigint>();
  const accountIds = new Set<bigint>();
  for (const request of requests) {
    for (const t of request) {
      if (options.lookUpIds && typeof t.id === "bigint" && !w.known.transfers.has(t.id))
        transferIds.add(t.id);
      const pendingId = t.pendingId ?? 0n;
      if (typeof pendingId === "bigint" && pendingId !== 0n) {
        const known = w.known.transfers.get(pendingId);
        if (known === undefined) transferIds.add(pendingId);
        else {
          accountIds.add(known.debitAccountId);
          accountIds.add(known.creditAccountId);
        }
      }
      if (typeof t.debitAccountId === "bigint" && t.debitAccountId !== 0n) accountIds.add(t.debitAccountId);
      if (typeof t.creditAccountId === "bigint" && t.creditAccountId !== 0n)
        accountIds.add(t.creditAccountId);
    }
  }
  const found = await selectTransfersOrSpent(sql, [...transferIds]);
  for (const { transfer, status } of found) {
    if (w.known.transfers.has(transfer.id)) continue;
    if (isSpentIdRow(transfer)) {
      // Spent by a transient failure: id_already_failed, and no transfer (a pending id naming it is not found).
      w.known.failed.add(transfer.id);
      if (seq > 0) w.writtenBy.set(transfer.id, seq);
      continue;
    }
    w.known.transfers.set(transfer.id, transfer);
    if (status !== null) w.known.pending.set(transfer.id, status);
    if (seq > 0) w.writtenBy.set(transfer.id, seq);
    if ((transfer.flags & TransferFlags.pending) !== 0) {
      accountIds.add(transfer.debitAccountId);
      accountIds.add(transfer.creditAccountId);
    }
  }
  await loadAccounts(w, sql, accountIds, options);
}
