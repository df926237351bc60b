// What both ways of running a batch share: the callers' statements written alongside it, resolving the callers,
// and the balance deltas of the accounts a batch touched.
import type { Row, Statement } from "../db/index.ts";
import type { TransferEffects } from "./semantics.ts";
import type { BatchWrites } from "./store-batch.ts";
import { balanceRows, transferRows } from "./store-params.ts";
import type { Account, CreateTransferResult, Transfer, WrittenTransfers } from "./types.ts";
import type { TransfersJob } from "./writer-state.ts";

/** The statements a batch's callers write alongside it; `slots[i]` is job i's among them, or -1 for none. */
export type AlongsideWrites = { statements: Statement[]; slots: number[] };
export const noAlongside: AlongsideWrites = { statements: [], slots: [] };

export function alongsideOf(
  jobs: readonly TransfersJob[],
  results: readonly CreateTransferResult[][],
  created: readonly Transfer[],
): AlongsideWrites {
  if (jobs.every((job) => job.alongside === undefined)) return noAlongside;
  let amounts: Map<bigint, bigint> | null = null;
  // Each caller is told of its own request's transfers only.
  const writtenBy = (job: TransfersJob): WrittenTransfers => ({
    amountOf(id) {
      if (!job.transfers.some((transfer) => transfer.id === id)) return undefined;
      amounts ??= new Map(created.map((transfer) => [transfer.id, transfer.amount]));
      return amounts.get(id);
    },
  });
  const statements: Statement[] = [];
  const slots = jobs.map((job, i) => {
    const statement = job.alongside?.statement(results[i]!, writtenBy(job)) ?? null;
    if (statement === null) return -1;
    statements.push(statement);
    return statements.length - 1;
  });
  return { statements, slots };
}

/** Resolves each job with its results and, when it wrote a statement alongside, that statement's rows. */
export function resolveJobs(
  jobs: readonly TransfersJob[],
  results: readonly CreateTransferResult[][],
  alongside: AlongsideWrites,
  rows: readonly Row[][],
): void {
  jobs.forEach((job, i) => {
    const slot = alongside.slots[i] ?? -1;
    job.resolve(results[i]!, slot < 0 ? null : rows[slot]!);
  });
}

/**
 * The rows a batch of transfers inserts: those it created, then a row for each id a transient failure spent — the id
 * alone, every other field zero, timestamp 0 (TigerBeetle's orphaned id: an id with no object), which no lookup
 * returns (store.ts) and which takes the id's place in the primary key, so that a later batch's insert of it fails
 * and runs again, locked, where it is read as spent.
 */
export function writtenTransfers(effects: TransferEffects): readonly Transfer[] {
  if (effects.failed.length === 0) return effects.created;
  return [...effects.created, ...effects.failed.map(spentIdRow)];
}

const spentIdRow = (id: bigint): Transfer => ({
  id,
  debitAccountId: 0n,
  creditAccountId: 0n,
  amount: 0n,
  ledger: 0,
  code: 0,
  flags: 0,
  pendingId: 0n,
  timeout: 0,
  userData128: 0n,
  userData64: 0n,
  userData32: 0,
  timestamp: 0n,
  evidence: null,
});

/** What a batch writes, without the clock. */
export type BatchChanges = Omit<BatchWrites, "expectedToken" | "clock">;
export const noChanges = (): BatchChanges => ({
  transfers: transferRows([]),
  balances: balanceRows([]),
  pendingOpened: [],
  pendingResolved: [],
  history: [],
  transferTimestampMax: 0n,
});

/**
 * The latest timestamp among the transfers a batch creates (0: none): BatchWrites.transferTimestampMax. The last
 * created is the latest: the ledger's timestamps increase through a batch, and an imported one must come after every
 * transfer's (importRegresses).
 */
export const latestCreated = (created: readonly Transfer[]): bigint => created.at(-1)?.timestamp ?? 0n;

/** Balance changes of the touched accounts, as deltas (right whatever the row holds), and their flags. */
export function deltas(accountsBefore: Map<Account, Account>) {
  const rows = [];
  for (const [after, before] of accountsBefore) {
    const row = {
      id: after.id,
      debitsPending: after.debitsPending - before.debitsPending,
      debitsPosted: after.debitsPosted - before.debitsPosted,
      creditsPending: after.creditsPending - before.creditsPending,
      creditsPosted: after.creditsPosted - before.creditsPosted,
      flags: after.flags,
    };
    if (
      row.debitsPending === 0n &&
      row.debitsPosted === 0n &&
      row.creditsPending === 0n &&
      row.creditsPosted === 0n &&
      after.flags === before.flags
    )
      continue;
    rows.push(row);
  }
  return rows;
}
