// Reconciling a rail: its clearing account in the ledger beside what the rail reports it holds now, and the operator's
// own movements of the rail's funds booked so that the two can match.
//
// Each rail that holds money outside the ledger (every kind but internal) has a clearing account per asset it books
// there: its own asset (the hot wallet's token, the node's channels, the PSP's balance), and on an EVM rail the chain's
// native token its hot wallet pays gas in. `railBalances` reads each of them beside the rail's own report — `balance()`
// for its asset, `nativeBalance()` (an EVM rail's, beyond the Rail contract) for the native token — each read bounded
// in time; a rail that cannot answer is reported as such, never thrown. The difference, rail less ledger posted, is
// what the ledger does not know of: deposits credited but not yet swept into the hot wallet, payouts in flight, and
// the operator's own movements, which `bookRailCapital` books.
//
// An operator's movement of the rail's own funds (tokens or ETH put into the hot wallet, a channel opened with its
// capital, a PSP balance topped up; or taken out) is one ledger transfer between the rail's capital account and its
// clearing account in that asset (payments.capitalIn: in, capital into clearing; out, the other way round), as the
// gas a hot wallet holds is booked at the first start and a provider's fees are funded (rail-fees.ts). Its id is
// derived from the rail and the operator's reference, so the reference books once: the same booking asked again is
// the ledger's `exists`, and the same reference with another amount, direction, asset or description is the ledger's
// `exists_with_different_…`, refused. One transfer: all or nothing.
import {
  type Asset,
  assetByCode,
  assets,
  type ParseAmountError,
  parseAmount,
  type Rail,
  type RailKind,
  SwitchyardError,
} from "../../core/index.ts";
import { type AccountCache, balanceOf } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import { type Ledger, ledgerHolds, type Transfer, transferCodes } from "../ledger/index.ts";
import { railAccountOpened } from "../payments/index.ts";
import { SettlementInvariantError } from "./invoices.ts";

export type ReconciliationDeps = {
  db: Db;
  ledger: Ledger;
  accounts: AccountCache;
  rails: ReadonlyMap<string, Rail>;
};

/**
 * An EVM rail's balance of its chain's native token, in the ledger's minor unit for it (gwei, rounded down), beyond
 * the Rail contract (adapters/evm EvmRail's nativeBalance), found on the rail as the composition root finds its
 * send-gas pass (gateway/app/evm.ts).
 */
export type NativeBalanceReader = {
  nativeBalance(): Promise<{ readonly asset: Asset; readonly amount: bigint }>;
};

/** How long a rail is given to report a balance before it is reported as not answering. */
export const railBalanceTimeoutMs = 5_000;

/** Why a rail's balance is not known: it did not answer within the bound, or it failed to. */
export type RailBalanceFailure = "rail_balance_timeout" | "rail_balance_unavailable";

/** What a rail reported it holds of an asset, in minor units, or why it did not. */
export type RailReported =
  | { readonly ok: true; readonly amount: bigint }
  | {
      readonly ok: false;
      readonly failure: RailBalanceFailure;
      /** A short message safe to show (no details of the provider's answer). */
      readonly message: string;
      /** What was thrown, for the log. */
      readonly cause: unknown;
    };

/** One rail and asset: the ledger's clearing account beside the rail's report, amounts in the asset's minor units. */
export type RailReconciliation = {
  readonly rail: string;
  readonly kind: HoldingRailKind;
  readonly asset: Asset;
  /** The clearing account's id; null when it was never opened (nothing booked in that asset yet). */
  readonly clearingAccountId: string | null;
  /** The clearing account is debit-normal: posted is what the ledger says the rail holds. */
  readonly ledger: { readonly posted: bigint; readonly pendingIn: bigint; readonly pendingOut: bigint };
  readonly reported: RailReported;
  /** Rail less ledger posted; null when the rail did not report. */
  readonly difference: bigint | null;
};

/**
 * The assets a rail books in clearing accounts, each with how the rail reports it: its own asset by `balance`, and on
 * an EVM rail the native token (ETH, in gwei as every gas booking is) by `nativeBalance`, when the rail has it.
 */
function balanceReadsOf(rail: Rail): { asset: Asset; read: () => Promise<bigint> }[] {
  const reads = [{ asset: rail.asset, read: () => rail.balance() }];
  const native = (rail as Partial<NativeBalanceReader>).nativeBalance;
  if (rail.kind !== "evm" || native === undefined) return reads;
  const read = async () => {
    const held = await native.call(rail);
    // Shown as the rail's failure to report (and logged), never as an amount of another asset.
    if (held.asset.code !== assets.ETH.code)
      throw new SwitchyardError("the rail reported its native balance in another asset than its gas", {
        details: `rail ${rail.id}: ${held.asset.code}, where its gas is booked in ETH`,
      });
    return held.amount;
  };
  return [...reads, { asset: assets.ETH, read }];
}

/** A rail of a kind that holds money outside the ledger. */
export type HoldingRailKind = Exclude<RailKind, "internal">;

/** The rails that hold money outside the ledger: every configured rail but the internal ones, in their order. */
function reconciledRails(rails: ReadonlyMap<string, Rail>): (Rail & { kind: HoldingRailKind })[] {
  return [...rails.values()].filter(
    (rail): rail is Rail & { kind: HoldingRailKind } => rail.kind !== "internal",
  );
}

/** `read`, or why it gave nothing within `timeoutMs`: it threw, or it did not answer. */
async function reportedWithin(read: () => Promise<bigint>, timeoutMs: number): Promise<RailReported> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<RailReported>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          ok: false,
          failure: "rail_balance_timeout",
          message: `the rail did not report its balance within ${timeoutMs} ms`,
          cause: null,
        }),
      timeoutMs,
    );
  });
  const answered = Promise.resolve()
    .then(read)
    .then(
      (amount): RailReported => ({ ok: true, amount }),
      (error: unknown): RailReported => ({
        ok: false,
        failure: "rail_balance_unavailable",
        // A rail's own error says what it was doing in its short message; its details (a provider's answer, a URL)
        // stay in the log.
        message:
          error instanceof SwitchyardError
            ? `the rail could not report its balance: ${error.shortMessage}`
            : "the rail could not report its balance",
        cause: error,
      }),
    );
  try {
    return await Promise.race([answered, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every rail that holds money outside the ledger, per asset it books in a clearing account: the ledger's clearing
 * balance, what the rail reports now (every read at once, each bounded by `balanceTimeoutMs`), and the difference.
 */
export async function railBalances(
  deps: ReconciliationDeps,
  params: { balanceTimeoutMs: number },
): Promise<RailReconciliation[]> {
  const entries = reconciledRails(deps.rails).flatMap((rail) =>
    balanceReadsOf(rail).map((reading) => ({ rail, ...reading })),
  );
  const [clearings, reports] = await Promise.all([
    Promise.all(
      entries.map((entry) =>
        deps.accounts.railAccount({ kind: "clearing", rail: entry.rail.id, asset: entry.asset }),
      ),
    ),
    Promise.all(entries.map((entry) => reportedWithin(entry.read, params.balanceTimeoutMs))),
  ]);
  const opened = clearings.flatMap((clearing) => (clearing === null ? [] : [clearing.ledgerAccountId]));
  const ledgerAccounts = new Map(
    (await deps.ledger.lookupAccounts(opened)).map((account) => [account.id, account]),
  );
  return entries.map((entry, index) => {
    const clearing = clearings[index] ?? null;
    const ledgerAccount = clearing === null ? undefined : ledgerAccounts.get(clearing.ledgerAccountId);
    if (clearing !== null && ledgerAccount === undefined)
      throw new SettlementInvariantError(`the clearing account ${clearing.id} has no ledger account`);
    const balance =
      ledgerAccount === undefined
        ? { posted: 0n, pendingIn: 0n, pendingOut: 0n }
        : balanceOf("clearing", ledgerAccount);
    const reported = reports[index]!;
    return {
      rail: entry.rail.id,
      kind: entry.rail.kind,
      asset: entry.asset,
      clearingAccountId: clearing?.id ?? null,
      ledger: { posted: balance.posted, pendingIn: balance.pendingIn, pendingOut: balance.pendingOut },
      reported,
      difference: reported.ok ? reported.amount - balance.posted : null,
    };
  });
}

// ---- the operator's capital

/** In: the operator put its own funds on the rail (capital → clearing). Out: it took them off (clearing → capital). */
export type CapitalDirection = "in" | "out";

/** The longest reference and description a booking takes (its evidence's bounds: ledger/types.ts). */
export const capitalReferenceLengthMax = 200;
export const capitalDescriptionLengthMax = 500;

/** A booking of the operator's capital, as the ledger holds it. */
export type CapitalBooking = {
  readonly transferId: bigint;
  readonly rail: string;
  readonly asset: Asset;
  readonly direction: CapitalDirection;
  readonly amount: bigint;
  readonly reference: string;
  readonly description: string | null;
  readonly clearingAccountId: string;
  readonly capitalAccountId: string;
  /** The ledger's timestamp, nanoseconds since the epoch. */
  readonly timestampNs: bigint;
};

export type CapitalRefusal =
  | "rail_not_found"
  | "unknown_asset"
  | "asset_mismatch"
  | ParseAmountError
  | "capital_reference_reused"
  | "insufficient_liquidity";

export type BookCapitalResult =
  | { ok: true; booking: CapitalBooking; replayed: boolean }
  | { ok: false; refusal: CapitalRefusal; message: string; param?: string };

const refuse = (refusal: CapitalRefusal, message: string, param?: string): BookCapitalResult => ({
  ok: false,
  refusal,
  message,
  ...(param === undefined ? {} : { param }),
});

/** The ledger transfer of the operator's booking `reference` on rail `rail`: one per rail and reference. */
export const railCapitalLedgerId = (rail: string, reference: string): bigint =>
  derivedLedgerId(`${rail}:${reference}`, "rail-capital");

/** The evidence's kind of every booking of the operator's capital (what its transfers' detail says). */
const capitalEvidenceKind = "operator_capital";

/**
 * Books an operator's movement of rail `rail`'s own funds, once per reference: capital → clearing for `in`, the other
 * way for `out`, in `asset` (one the rail books in a clearing account). An `out` the clearing account's rule does not
 * allow (its tokens are the customers' money, which it must keep) is refused `insufficient_liquidity`, nothing
 * written.
 */
export async function bookRailCapital(
  deps: ReconciliationDeps,
  params: {
    rail: string;
    asset: string;
    direction: CapitalDirection;
    amount: string;
    reference: string;
    description: string | null;
  },
): Promise<BookCapitalResult> {
  const rail = deps.rails.get(params.rail);
  if (rail === undefined || rail.kind === "internal")
    return refuse(
      "rail_not_found",
      rail === undefined
        ? `no rail "${params.rail}"`
        : `the rail "${params.rail}" holds nothing outside the ledger: it has no clearing account`,
    );
  const asset = assetByCode(params.asset);
  if (asset === null) return refuse("unknown_asset", `no asset "${params.asset}"`, "asset");
  const booked = balanceReadsOf(rail).map((reading) => reading.asset.code);
  if (!booked.includes(asset.code))
    return refuse(
      "asset_mismatch",
      `the rail "${rail.id}" books ${booked.join(" and ")} in its clearing accounts, not ${asset.code}`,
      "asset",
    );
  const amount = parseAmount(params.amount, asset);
  if (!amount.ok)
    return refuse(amount.error, `"${params.amount}" is not a valid ${asset.code} amount`, "amount");
  const [clearing, capital] = await Promise.all([
    railAccountOpened(deps, { kind: "clearing", rail: rail.id, asset }),
    railAccountOpened(deps, { kind: "capital", rail: rail.id, asset }),
  ]);
  const [from, to] = params.direction === "in" ? [capital, clearing] : [clearing, capital];
  const id = railCapitalLedgerId(rail.id, params.reference);
  const [result] = await deps.ledger.createTransfers([
    {
      id,
      debitAccountId: to.ledgerAccountId,
      creditAccountId: from.ledgerAccountId,
      amount: amount.value,
      ledger: asset.ledger,
      code: transferCodes.payments.capitalIn,
      evidence: {
        rail: rail.id,
        reference: params.reference,
        detail: {
          kind: capitalEvidenceKind,
          direction: params.direction,
          ...(params.description === null ? {} : { description: params.description }),
        },
      },
    },
  ]);
  const status = result?.status;
  if (status?.startsWith("exists_with_different_") === true)
    return refuse(
      "capital_reference_reused",
      `the reference "${params.reference}" booked another movement on rail "${rail.id}": send the same body to have that booking again, or use a new reference`,
      "reference",
    );
  if (status === "exceeds_debits")
    return refuse(
      "insufficient_liquidity",
      `the clearing account of rail "${rail.id}" in ${asset.code} does not hold that much beyond what its payouts and refunds hold`,
      "amount",
    );
  if (status?.startsWith("overflows_") === true)
    return refuse(
      "amount_too_large",
      `"${params.amount}" ${asset.code} would take the rail's accounts beyond what the ledger holds`,
      "amount",
    );
  if (!ledgerHolds(status))
    throw new SettlementInvariantError(
      `the ledger refused the operator's capital "${params.reference}" on rail ${rail.id}: ${status ?? "no result"}`,
    );
  const [transfer] = await deps.ledger.lookupTransfers([id]);
  if (transfer === undefined)
    throw new SettlementInvariantError(`the operator's capital "${params.reference}" is not in the ledger`);
  return {
    ok: true,
    booking: bookingOf(transfer, { rail: rail.id, asset, clearingId: clearing.id, capitalId: capital.id }),
    replayed: status === "exists",
  };
}

/** A booking as the ledger holds it: its direction from which side the clearing account is on. */
function bookingOf(
  transfer: Transfer,
  at: { rail: string; asset: Asset; clearingId: string; capitalId: string },
): CapitalBooking {
  const evidence = transfer.evidence;
  if (evidence === null || evidence.detail?.kind !== capitalEvidenceKind)
    throw new SettlementInvariantError(`transfer ${transfer.id} is no booking of the operator's capital`);
  const direction = evidence.detail.direction;
  if (direction !== "in" && direction !== "out")
    throw new SettlementInvariantError(`transfer ${transfer.id} names no direction`);
  return {
    transferId: transfer.id,
    rail: at.rail,
    asset: at.asset,
    direction,
    amount: transfer.amount,
    reference: evidence.reference,
    description: evidence.detail.description ?? null,
    clearingAccountId: at.clearingId,
    capitalAccountId: at.capitalId,
    timestampNs: transfer.timestamp,
  };
}
