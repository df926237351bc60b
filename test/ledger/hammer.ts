// One gateway process hammering a shared ledger database (spawned by concurrency.test.ts, and also used in-process).
// Input: a JSON HammerPlan in argv[2] (child) or as a function argument. Output: what each transfer id came to.
import { type Db, openPostgres } from "../../gateway/db/index.ts";
import {
  createLedger,
  type Ledger,
  ledgerId,
  TransferFlags,
  type TransferInput,
} from "../../gateway/ledger/index.ts";

export type HammerPlan = {
  url: string;
  name: string;
  /** ordinary accounts, hot account first */
  accounts: string[];
  /** accounts with debits_must_not_exceed_credits, funded a little */
  limited: string[];
  /** ids every process submits with the same fields: exactly one process may create each */
  sharedIds: string[];
  requests: number;
  callers: number;
  transfersPerRequest: number;
  poolSizeMax: number;
};

export type HammerOutcome = { name: string; created: string[]; statuses: Record<string, number> };

const ledgerNumber = 1;

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

function buildRequest(
  plan: HammerPlan,
  accounts: bigint[],
  limited: bigint[],
  shared: bigint[],
): TransferInput[] {
  const hot = accounts[0]!;
  const out: TransferInput[] = [];
  const plain = (debit: bigint, credit: bigint, amount: bigint, flags = 0): TransferInput => ({
    id: ledgerId(),
    debitAccountId: debit,
    creditAccountId: credit,
    amount,
    ledger: ledgerNumber,
    code: 1,
    flags,
  });
  const other = (not: bigint) => {
    for (;;) {
      const a = pick(accounts);
      if (a !== not) return a;
    }
  };
  while (out.length < plan.transfersPerRequest) {
    const roll = Math.random();
    if (roll < 0.4) {
      const debit = pick(accounts);
      out.push(plain(debit, other(debit), BigInt(1 + Math.floor(Math.random() * 100))));
    } else if (roll < 0.65) {
      const debit = other(hot);
      out.push(plain(debit, hot, BigInt(1 + Math.floor(Math.random() * 100))));
    } else if (roll < 0.8) {
      // spend from a limited account: may exceed its credits, and must then fail
      const debit = pick(limited);
      out.push(plain(debit, hot, BigInt(1 + Math.floor(Math.random() * 30))));
    } else if (roll < 0.9) {
      // a linked chain: a fee from the payer, then the payment from a limited account; all or nothing
      const payer = other(hot);
      out.push(plain(payer, hot, 1n, TransferFlags.linked));
      out.push(plain(pick(limited), other(hot), BigInt(1 + Math.floor(Math.random() * 20))));
    } else if (roll < 0.95) {
      // two-phase in one request: reserve, then post part of it
      const debit = pick(accounts);
      const pending = plain(debit, other(debit), 50n, TransferFlags.pending);
      out.push(pending);
      out.push({
        id: ledgerId(),
        debitAccountId: 0n,
        creditAccountId: 0n,
        amount: 20n,
        ledger: 0,
        code: 0,
        pendingId: pending.id,
        flags: TransferFlags.postPendingTransfer,
      });
    } else {
      // a shared id: every process submits it with the same fields
      const index = Math.floor(Math.random() * shared.length);
      const debit = accounts[1 + (index % (accounts.length - 1))]!;
      out.push({
        id: shared[index]!,
        debitAccountId: debit,
        creditAccountId: hot,
        amount: 7n,
        ledger: ledgerNumber,
        code: 2,
      });
    }
  }
  return out;
}

export async function hammer(
  plan: HammerPlan,
  existing?: { db: Db; ledger: Ledger },
): Promise<HammerOutcome> {
  const db =
    existing?.db ??
    openPostgres({ url: plan.url, poolSizeMax: plan.poolSizeMax, statementTimeoutMs: 60_000 });
  const ledger = existing?.ledger ?? createLedger({ db, limits: { expiryIntervalMs: 0 } });
  const accounts = plan.accounts.map(BigInt);
  const limited = plan.limited.map(BigInt);
  const shared = plan.sharedIds.map(BigInt);
  const created: string[] = [];
  const statuses: Record<string, number> = {};
  let remaining = plan.requests;
  await Promise.all(
    Array.from({ length: plan.callers }, async () => {
      while (remaining > 0) {
        remaining--;
        const request = buildRequest(plan, accounts, limited, shared);
        const results = await ledger.createTransfers(request);
        results.forEach((result, i) => {
          statuses[result.status] = (statuses[result.status] ?? 0) + 1;
          if (result.status === "created") created.push(request[i]!.id.toString());
        });
      }
    }),
  );
  if (existing === undefined) {
    await ledger.close();
    await db.close();
  }
  return { name: plan.name, created, statuses };
}

if (import.meta.main) {
  const plan = JSON.parse(process.argv[2]!) as HammerPlan;
  const outcome = await hammer(plan);
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}
