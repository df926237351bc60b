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
//
// A rail reports the operator's funds its provider moved the same way (a Stripe payout of the platform's balance to
// the operator's bank, and its money back when the payout failed: `bookRailCapitalMovements`), under the provider's
// own references. One the clearing account does not hold yet (the operator's funds put on the rail never booked, or
// payouts in flight holding them) is kept (table rail_capital_parked) rather than refused back to the rail: a provider
// stops redelivering after a while (Stripe after 3 days), and the movement would then never be booked. It is booked
// once the clearing account holds it: right after the operator books capital in on the rail, and by a periodic pass
// (`applyParkedRailCapital`). The operator's booking by hand under the provider's own name for one (a Stripe payout's
// taking under its po_…, as operators did before the gateway booked payouts: CapitalBookedByHand) takes the rail's
// booking's ledger id, so the two are one booking whichever comes first: the same movement by hand after the rail's is
// that booking again, another is refused; the rail's after one by hand of another movement is booked beside it. One
// booked by hand before under its own id is found in the same ledger lookup as the rail's own references.
import {
  type Asset,
  assetByCode,
  assets,
  formatAmount,
  type Logger,
  type ParseAmountError,
  parseAmount,
  type Rail,
  type RailCapitalMovement,
  type RailKind,
  SwitchyardError,
} from "../../core/index.ts";
import { type AccountCache, type AccountRecord, balanceOf } from "../accounts/index.ts";
import type { Db } from "../db/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  type Ledger,
  ledgerHolds,
  type Transfer,
  TransferFlags,
  type TransferInput,
  transferCodes,
} from "../ledger/index.ts";
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
  const accounts = await capitalAccountsOf(deps, rail.id, asset);
  const at = { rail: rail.id, asset, clearingId: accounts.clearing.id, capitalId: accounts.capital.id };
  const movement = { ...params, amount: amount.value };
  const eventReference = asset.code === rail.asset.code ? eventReferenceOf(rail, params.reference) : null;
  const id = await handLedgerId(deps, rail.id, params.reference, eventReference);
  const [result] = await deps.ledger.createTransfers([
    { ...capitalTransfer(rail.id, asset, accounts, movement), id },
  ]);
  const status = result?.status;
  if (status?.startsWith("exists_with_different_") === true) {
    const [booked] = await deps.ledger.lookupTransfers([id]);
    // The rail's own booking of the movement this reference names (a Stripe payout's taking under its po_…): the same
    // movement is that booking again, whatever its description; another is refused, the rail's standing.
    if (booked !== undefined && eventReference !== null && booked.evidence?.reference !== params.reference) {
      if (standsFor(booked, capitalTransfer(rail.id, asset, accounts, movement)))
        return { ok: true, booking: bookingOf(booked, at), replayed: true };
      const railsOwn = bookingOf(booked, at);
      return refuse(
        "capital_reference_reused",
        `the reference "${params.reference}" names a movement rail "${rail.id}" books from its provider's events, booked as "${railsOwn.reference}": ${railsOwn.direction} ${formatAmount(railsOwn.amount, asset)} ${asset.code}, not this one; book another movement under a reference of your own`,
        "reference",
      );
    }
    return refuse(
      "capital_reference_reused",
      `the reference "${params.reference}" booked another movement on rail "${rail.id}": send the same body to have that booking again, or use a new reference`,
      "reference",
    );
  }
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
  // Funds put on the rail may be what a movement the rail reported was waiting for. Their booking is done whatever
  // becomes of that: one that fails now is left to the periodic pass, which tries it again and logs what it cannot do.
  if (status === "created" && params.direction === "in" && asset.code === rail.asset.code)
    await applyParkedRailCapital(deps, { rail: rail.id }).catch(() => undefined);
  return { ok: true, booking: bookingOf(transfer, at), replayed: status === "exists" };
}

/** The movement the rail books itself that a booking by hand under `reference` stands for (CapitalBookedByHand). */
function eventReferenceOf(rail: Rail, reference: string): string | null {
  const eventReference = (rail as Partial<CapitalBookedByHand>).capitalEventReference;
  if (eventReference === undefined) return null;
  const named = eventReference.call(rail, reference);
  return named === reference ? null : named;
}

/**
 * The ledger id of the operator's booking by hand under `reference`: its own, or, for one that names a movement the
 * rail books itself (`eventReference`), that booking's, so that the ledger's one id per transfer keeps the two from
 * both being booked, whichever comes first and from whichever process (before, they had each their own id, and only
 * a report of the rail after the booking by hand looked for it: one by hand after it, or at the same time, booked the
 * movement twice). A booking by hand made under its own id before stays that booking: the same body again is it again.
 */
async function handLedgerId(
  deps: ReconciliationDeps,
  rail: string,
  reference: string,
  eventReference: string | null,
): Promise<bigint> {
  const own = railCapitalLedgerId(rail, reference);
  if (eventReference === null) return own;
  const [before] = await deps.ledger.lookupTransfers([own]);
  return before === undefined ? railCapitalLedgerId(rail, eventReference) : own;
}

/**
 * Whether `booked` is the movement `transfer` books, whatever its reference and description: the same accounts (so
 * direction and asset), amount, ledger and code.
 */
function standsFor(booked: Transfer, transfer: TransferInput): boolean {
  return (
    booked.debitAccountId === transfer.debitAccountId &&
    booked.creditAccountId === transfer.creditAccountId &&
    booked.amount === transfer.amount &&
    booked.ledger === transfer.ledger &&
    booked.code === transfer.code
  );
}

type CapitalAccounts = { readonly clearing: AccountRecord; readonly capital: AccountRecord };

async function capitalAccountsOf(
  deps: ReconciliationDeps,
  rail: string,
  asset: Asset,
): Promise<CapitalAccounts> {
  const [clearing, capital] = await Promise.all([
    railAccountOpened(deps, { kind: "clearing", rail, asset }),
    railAccountOpened(deps, { kind: "capital", rail, asset }),
  ]);
  return { clearing, capital };
}

/**
 * The ledger transfer of one movement of the operator's capital: capital → clearing for `in`, the other way for `out`.
 * The same whoever books it (the operator, or the rail's report of it), so that either is the other's repeat.
 */
function capitalTransfer(
  rail: string,
  asset: Asset,
  accounts: CapitalAccounts,
  movement: { direction: CapitalDirection; amount: bigint; reference: string; description: string | null },
  flags = 0,
): TransferInput {
  const [from, to] =
    movement.direction === "in"
      ? [accounts.capital, accounts.clearing]
      : [accounts.clearing, accounts.capital];
  return {
    id: railCapitalLedgerId(rail, movement.reference),
    debitAccountId: to.ledgerAccountId,
    creditAccountId: from.ledgerAccountId,
    amount: movement.amount,
    ledger: asset.ledger,
    code: transferCodes.payments.capitalIn,
    ...(flags === 0 ? {} : { flags }),
    evidence: {
      rail,
      reference: movement.reference,
      detail: {
        kind: capitalEvidenceKind,
        direction: movement.direction,
        ...(movement.description === null ? {} : { description: movement.description }),
      },
    },
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

// ---- the operator's capital a rail reported moved

/**
 * A rail whose reports of the operator's capital the operator may have booked by hand first, under the provider's own
 * name for the movement (the fiat rail: a Stripe payout's taking under the payout's `po_…`, as operators booked payouts
 * before the gateway booked them from Stripe's events), beyond the Rail contract, found on the rail as nativeBalance is.
 */
export type CapitalBookedByHand = {
  /** The reference the operator may have booked the reported movement `reference` under by hand; null: none. */
  capitalHandReference(reference: string): string | null;
  /**
   * The reported movement the operator's booking by hand under `reference` stands for (capitalHandReference the other
   * way); null: none. The two share one ledger id (bookRailCapital).
   */
  capitalEventReference(reference: string): string | null;
};

/** A movement a rail reported beside the operator's booking by hand under its own name (CapitalBookedByHand). */
export type HandBooked = { readonly movement: RailCapitalMovement; readonly handReference: string };

/** What became of movements a rail reported: `notHeld` waits for the clearing account, `reused` is never booked. */
export type CapitalMovementsOutcome = {
  /** Not booked: the clearing account does not hold them beyond what its payouts and refunds hold. */
  readonly notHeld: readonly RailCapitalMovement[];
  /** Not booked: their reference is booked already as another movement (by hand); no delivery would mend that. */
  readonly reused: readonly RailCapitalMovement[];
  /** Not booked: the operator booked each by hand under its own name, the same movement (direction, amount, asset). */
  readonly byHand: readonly HandBooked[];
  /**
   * Booked (or waiting, as the others) all the same: the operator booked another movement by hand under its name (another
   * direction, amount or asset), which is no booking of it.
   */
  readonly handDiffers: readonly HandBooked[];
};

/**
 * The ledger id a movement the rail reported is booked under when the operator booked another movement by hand under
 * its own id first (a Stripe payout's po_… of another amount or direction: bookRailCapital): the rail's is booked all
 * the same, beside it. Only ever booked after its own id was found holding another movement, which it holds for good.
 */
export const railCapitalBesideHandLedgerId = (rail: string, reference: string): bigint =>
  derivedLedgerId(`${rail}:${reference}`, "rail-capital-beside-hand");

/**
 * Books the movements of the operator's capital a rail reported, each once per reference, in the rail's own asset:
 * those the ledger does not have yet in one write, a linked chain (all or none) in their order. So a payout's money
 * given back and taken (`in` then `out`) is booked at once: the clearing account never holds the amount given back
 * alone, for a reservation made meanwhile to take before its taking is booked. A chain the ledger refuses because
 * another delivery booked a member of it meanwhile is written again without that member. A movement's own id found
 * holding the operator's booking by hand under the provider's name for it (bookRailCapital) is that booking when it
 * is the same movement; another is booked beside it (railCapitalBesideHandLedgerId).
 */
export async function bookRailCapitalMovements(
  deps: ReconciliationDeps,
  params: { rail: string; movements: readonly RailCapitalMovement[] },
): Promise<CapitalMovementsOutcome> {
  const rail = deps.rails.get(params.rail);
  if (rail === undefined || rail.kind === "internal")
    throw new SettlementInvariantError(`the operator's capital on rail ${params.rail}, which holds none`);
  const accounts = await capitalAccountsOf(deps, rail.id, rail.asset);
  const reused: RailCapitalMovement[] = [];
  const byHand: HandBooked[] = [];
  const handDiffers: HandBooked[] = [];
  const done = () => ({ notHeld: [], reused, byHand, handDiffers });
  let left = params.movements.map((movement) => ({
    movement,
    id: railCapitalLedgerId(rail.id, movement.reference),
    beside: false,
  }));
  const hand = handBookingsOf(rail, params.movements);
  // Each round books the rest, or finds one more member booked meanwhile (or booked as another movement). The first
  // reads the operator's bookings by hand under their own ids (made before they took the rail's) in the same lookup.
  // A movement may take a round more than once (found by hand under its id, then booked beside), hence the bound.
  for (let round = 0; round <= 2 * params.movements.length; round += 1) {
    const found = await deps.ledger.lookupTransfers([
      ...left.map((each) => each.id),
      ...(round === 0 ? hand.map((each) => each.id) : []),
    ]);
    if (round === 0 && hand.length > 0) {
      const standing = handBooked(rail, accounts, hand, found);
      byHand.push(...standing.byHand);
      handDiffers.push(...standing.handDiffers);
      left = left.filter((each) => !standing.byHand.some((booked) => booked.movement === each.movement));
    }
    left = left.flatMap((each) => {
      const booked = found.find((transfer) => transfer.id === each.id);
      if (booked === undefined) return [each];
      if (each.beside) return [];
      const same = standsFor(booked, capitalTransfer(rail.id, rail.asset, accounts, each.movement));
      const reference = booked.evidence?.reference;
      if (reference === undefined || reference === each.movement.reference) {
        if (!same) reused.push(each.movement);
        return [];
      }
      // The operator's booking by hand under the provider's name for it, under its id.
      const byHandHere = { movement: each.movement, handReference: reference };
      if (same) {
        byHand.push(byHandHere);
        return [];
      }
      handDiffers.push(byHandHere);
      return [{ ...each, id: railCapitalBesideHandLedgerId(rail.id, each.movement.reference), beside: true }];
    });
    if (left.length === 0) return done();
    const results = await deps.ledger.createTransfers(
      left.map((each, index) => ({
        ...capitalTransfer(
          rail.id,
          rail.asset,
          accounts,
          each.movement,
          index < left.length - 1 ? TransferFlags.linked : 0,
        ),
        id: each.id,
      })),
    );
    const statuses = left.map((_, index) => results[index]?.status ?? "no result");
    if (statuses.every((status) => status === "created")) return done();
    // Under its own id, the next round reads what holds it (booked as another movement, or by hand); beside a booking
    // by hand, another movement is the rail's own of another amount: never booked.
    const other = left.filter(
      (each, index) => each.beside && statuses[index]!.startsWith("exists_with_different_"),
    );
    if (other.length > 0) {
      reused.push(...other.map((each) => each.movement));
      left = left.filter((each) => !other.includes(each));
      continue;
    }
    if (statuses.some((status) => status === "exists" || status.startsWith("exists_with_different_")))
      continue;
    if (statuses.includes("exceeds_debits")) return { ...done(), notHeld: left.map((each) => each.movement) };
    const refusal = statuses.find((status) => status !== "linked_event_failed");
    throw new SettlementInvariantError(
      `the ledger refused the operator's capital ${left.map((each) => each.movement.reference).join(", ")} on rail ${rail.id}: ${refusal ?? "no result"}`,
    );
  }
  if (left.length === 0) return done();
  throw new SettlementInvariantError(
    `the operator's capital ${left.map((each) => each.movement.reference).join(", ")} on rail ${rail.id} is still not booked`,
  );
}

/** The bookings by hand under their own ids the rail says `movements` may have (CapitalBookedByHand), with those ids. */
function handBookingsOf(
  rail: Rail,
  movements: readonly RailCapitalMovement[],
): (HandBooked & { id: bigint })[] {
  const handReference = (rail as Partial<CapitalBookedByHand>).capitalHandReference;
  if (handReference === undefined) return [];
  return movements.flatMap((movement) => {
    const reference = handReference.call(rail, movement.reference);
    if (reference === null || reference === movement.reference) return [];
    return [{ movement, handReference: reference, id: railCapitalLedgerId(rail.id, reference) }];
  });
}

/**
 * Which of the bookings by hand `found` holds stand for their movement: the same accounts (so direction and asset) and
 * amount, whatever its description. One that differs does not: the movement is booked all the same, for the rail's
 * report is the movement as it happened, and the clearing account follows it. Taken for the movement, a hand booking
 * of another amount would leave the clearing account off by the difference (above what the provider holds, when the
 * operator booked less, and the ledger would then let payouts and refunds take money the rail does not have); booked
 * beside it, its error is its own, one the operator sees in the rail's difference and books back.
 */
function handBooked(
  rail: Rail,
  accounts: CapitalAccounts,
  hand: readonly (HandBooked & { id: bigint })[],
  found: readonly Transfer[],
): { byHand: HandBooked[]; handDiffers: HandBooked[] } {
  const byHand: HandBooked[] = [];
  const handDiffers: HandBooked[] = [];
  for (const { id, ...each } of hand) {
    const booked = found.find((transfer) => transfer.id === id);
    if (booked === undefined) continue;
    const stands = standsFor(booked, capitalTransfer(rail.id, rail.asset, accounts, each.movement));
    (stands ? byHand : handDiffers).push(each);
  }
  return { byHand, handDiffers };
}

/**
 * Keeps movements the rail's clearing account does not hold yet, for applyParkedRailCapital to book (each once: kept
 * again, a reference changes nothing).
 */
export async function parkRailCapital(
  deps: Pick<ReconciliationDeps, "db" | "rails">,
  params: { rail: string; movements: readonly RailCapitalMovement[] },
): Promise<void> {
  const rail = deps.rails.get(params.rail);
  if (rail === undefined)
    throw new SettlementInvariantError(
      `the operator's capital on rail ${params.rail}, which is not configured`,
    );
  for (const movement of params.movements)
    await deps.db.query(
      `INSERT INTO rail_capital_parked (rail, reference, asset, direction, amount, description)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (rail, reference) DO NOTHING`,
      [
        rail.id,
        movement.reference,
        rail.asset.code,
        movement.direction,
        movement.amount,
        movement.description,
      ],
    );
}

/** Forgets kept movements of `rail` that are booked now (by the rail's later report of them). */
export async function unparkRailCapital(
  deps: Pick<ReconciliationDeps, "db">,
  params: { rail: string; references: readonly string[] },
): Promise<void> {
  if (params.references.length === 0) return;
  await deps.db.query("DELETE FROM rail_capital_parked WHERE rail = $1 AND reference = ANY($2::text[])", [
    params.rail,
    params.references,
  ]);
}

/** The most kept movements one statement of a pass reads; a pass reads them all, a page at a time. */
export const parkedRailCapitalPassMax = 100;

type ParkedRow = {
  /** parked_at as text: its microseconds, which a Date would lose, for the next page's cursor. */
  parked_at: string;
  rail: string;
  reference: string;
  asset: string;
  direction: CapitalDirection;
  amount: bigint;
  description: string;
};

/**
 * Books the kept movements (parkRailCapital) the clearing account holds now, oldest first, of `rail` (or every rail),
 * or only those of `references`; each booked, or booked already, is forgotten. One still not held stays for the next
 * pass; one whose reference was booked as another movement meanwhile is logged and forgotten, and one whose booking
 * fails is logged and tried again at the next pass, without holding the others back (`logger` absent: both left for a
 * pass that has one). Several processes may pass at once: each movement's booking is the ledger's, once.
 */
export async function applyParkedRailCapital(
  deps: ReconciliationDeps & { logger?: Logger },
  params: { rail?: string; references?: readonly string[] } = {},
): Promise<{ booked: number; waiting: number }> {
  let booked = 0;
  let waiting = 0;
  // Page after page from where the last one ended: the oldest that still do not fit (or belong to a rail this process
  // lacks) never keep a newer one that fits from being tried.
  let after: ParkedRow | null = null;
  for (;;) {
    const rows: ParkedRow[] = await deps.db.query<ParkedRow>(
      `SELECT parked_at::text AS parked_at, rail, reference, asset, direction, amount, description
        FROM rail_capital_parked
        WHERE ($1::text IS NULL OR rail = $1) AND ($2::text[] IS NULL OR reference = ANY($2::text[]))
          AND ($4::timestamptz IS NULL OR (parked_at, rail, reference) > ($4::timestamptz, $5::text, $6::text))
        ORDER BY parked_at, rail, reference LIMIT $3`,
      [
        params.rail ?? null,
        params.references ?? null,
        parkedRailCapitalPassMax,
        after?.parked_at ?? null,
        after?.rail ?? null,
        after?.reference ?? null,
      ],
    );
    const done = await applyParkedRows(deps, rows);
    booked += done.booked;
    waiting += done.waiting;
    if (rows.length < parkedRailCapitalPassMax) return { booked, waiting };
    after = rows[rows.length - 1] ?? null;
  }
}

async function applyParkedRows(
  deps: ReconciliationDeps & { logger?: Logger },
  rows: readonly ParkedRow[],
): Promise<{ booked: number; waiting: number }> {
  let booked = 0;
  let waiting = 0;
  for (const row of rows) {
    const rail = deps.rails.get(row.rail);
    // A rail no longer configured here (or its asset changed) is left for a process that has it.
    if (rail === undefined || rail.asset.code !== row.asset) {
      waiting += 1;
      continue;
    }
    const movement: RailCapitalMovement = {
      direction: row.direction,
      amount: BigInt(row.amount),
      reference: row.reference,
      description: row.description,
    };
    const fields = { rail: row.rail, reference: row.reference, amount: movement.amount.toString() };
    let outcome: CapitalMovementsOutcome;
    try {
      outcome = await bookRailCapitalMovements(deps, { rail: row.rail, movements: [movement] });
    } catch (error) {
      deps.logger?.error(
        { ...fields, err: error },
        "the operator's capital the rail moved could not be booked",
      );
      waiting += 1;
      continue;
    }
    if (outcome.notHeld.length > 0) {
      waiting += 1;
      continue;
    }
    for (const { handReference } of outcome.byHand)
      deps.logger?.info(
        { ...fields, handReference },
        "the operator's capital the rail moved was booked by hand under its own name; it is not booked again",
      );
    for (const { handReference } of outcome.handDiffers)
      deps.logger?.error(
        { ...fields, handReference },
        "the operator booked another movement by hand under the name of one the rail moved; that one is booked all the same (book back the hand booking if it was meant for it)",
      );
    if (outcome.reused.length > 0) {
      if (deps.logger === undefined) {
        waiting += 1;
        continue;
      }
      deps.logger.error(
        fields,
        "the operator's capital the rail moved has its reference booked as another movement; it is not booked",
      );
    } else booked += 1;
    await unparkRailCapital(deps, { rail: row.rail, references: [row.reference] });
  }
  return { booked, waiting };
}
