// /v1/rails: the operator's view of each rail's money (only the operator's credential is answered here; auth.ts).
// List each rail that holds money outside the ledger, per asset it books in a clearing account, with the ledger's
// clearing balance beside what the rail reports it holds now and the difference (settlement/reconciliation.ts); and
// book the operator's own movement of a rail's funds (tokens or ETH put into the hot wallet, a channel opened with its
// capital, a PSP balance topped up, or any of these taken out) between the rail's capital and clearing accounts, once
// per reference.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { everyMember, formatAmount } from "../../../core/index.ts";
import {
  bookRailCapital,
  type CapitalBooking,
  type CapitalRefusal,
  capitalDescriptionLengthMax,
  capitalReferenceLengthMax,
  type RailReconciliation,
  type ReconciliationDeps,
  railBalances,
  railBalanceTimeoutMs,
} from "../../settlement/index.ts";
import { ApiError } from "../errors.ts";
import { listView } from "../lists.ts";
import { assetCode, decimalAmount, errorView } from "../schemas.ts";
import { labelSchema } from "./api-keys.ts";

export type RailRoutesOptions = ReconciliationDeps;

const railParams = z.strictObject({
  rail: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, "a rail's id (evm, evm-l2, lightning, fiat, …)"),
});

/** An amount as account balances show it: a decimal string in the asset's major unit, every decimal written. */
const amount = z.string();

export const railBalanceView = z.object({
  object: z.literal("rail_balance"),
  rail: z.string(),
  kind: z.enum(["evm", "lightning", "fiat"]),
  /** The asset of every amount of this entry. */
  asset: z.string(),
  /** The rail's clearing account in this asset; null when nothing was ever booked in it. */
  clearing_account: z.string().nullable(),
  /** What the ledger says the rail holds: posted, and what holds in flight would add (in) or take (out). */
  ledger: z.object({ posted: amount, pending_in: amount, pending_out: amount }),
  /** What the rail reports it holds now; null when it did not answer (rail_error says why). */
  rail_balance: amount.nullable(),
  rail_error: z
    .object({ code: z.enum(["rail_balance_timeout", "rail_balance_unavailable"]), message: z.string() })
    .nullable(),
  /** rail_balance less ledger.posted; null with rail_balance. */
  difference: amount.nullable(),
});
export type RailBalanceView = z.infer<typeof railBalanceView>;

export const createRailCapitalBody = z.strictObject({
  asset: assetCode("USDC"),
  /** in: the operator put its own funds on the rail; out: it took them off. */
  direction: z.enum(["in", "out"]),
  amount: decimalAmount(),
  /** The operator's own name for the movement (a transaction hash, a channel point, a top-up's id): booked once. */
  reference: labelSchema(capitalReferenceLengthMax),
  description: labelSchema(capitalDescriptionLengthMax).optional(),
});

export const railCapitalView = z.object({
  /** The ledger transfer, as an account's transactions name it. */
  id: z.string(),
  object: z.literal("rail_capital"),
  rail: z.string(),
  asset: z.string(),
  direction: z.enum(["in", "out"]),
  amount,
  reference: z.string(),
  description: z.string().nullable(),
  clearing_account: z.string(),
  capital_account: z.string(),
  created_at: z.string(),
});
export type RailCapitalView = z.infer<typeof railCapitalView>;

/** Every CapitalRefusal once, for the API's document. */
const capitalRefusals = everyMember<CapitalRefusal>({
  rail_not_found: true,
  unknown_asset: true,
  asset_mismatch: true,
  amount_not_a_decimal: true,
  amount_not_positive: true,
  amount_too_precise: true,
  amount_too_large: true,
  capital_reference_reused: true,
  insufficient_liquidity: true,
});

export function presentRailBalance(entry: RailReconciliation): RailBalanceView {
  const format = (value: bigint) => formatAmount(value, entry.asset);
  const { reported } = entry;
  return {
    object: "rail_balance",
    rail: entry.rail,
    kind: entry.kind,
    asset: entry.asset.code,
    clearing_account: entry.clearingAccountId,
    ledger: {
      posted: format(entry.ledger.posted),
      pending_in: format(entry.ledger.pendingIn),
      pending_out: format(entry.ledger.pendingOut),
    },
    rail_balance: reported.ok ? format(reported.amount) : null,
    rail_error: reported.ok ? null : { code: reported.failure, message: reported.message },
    difference: entry.difference === null ? null : format(entry.difference),
  };
}

/** A transaction's id: `txn_` and its ledger transfer's 128-bit id in 32 hex digits (as accounts.ts shows it). */
const transactionId = (transferId: bigint) => `txn_${transferId.toString(16).padStart(32, "0")}`;

export function presentRailCapital(booking: CapitalBooking): RailCapitalView {
  return {
    id: transactionId(booking.transferId),
    object: "rail_capital",
    rail: booking.rail,
    asset: booking.asset.code,
    direction: booking.direction,
    amount: formatAmount(booking.amount, booking.asset),
    reference: booking.reference,
    description: booking.description,
    clearing_account: booking.clearingAccountId,
    capital_account: booking.capitalAccountId,
    created_at: new Date(Number(booking.timestampNs / 1_000_000n)).toISOString(),
  };
}

const plugin: FastifyPluginAsyncZod<RailRoutesOptions> = async (app, options) => {
  const deps: ReconciliationDeps = {
    db: options.db,
    ledger: options.ledger,
    accounts: options.accounts,
    rails: options.rails,
  };

  app.get(
    "/rails",
    {
      schema: {
        description: `Each rail that holds money outside the ledger, once per asset it books in a clearing account (its own asset; on an EVM rail also ETH, the gas its hot wallet holds): the ledger's clearing balance (posted, and the holds in flight in and out), what the rail reports it holds now (the hot wallet's balance, what the node holds in its open channels (their balance on its side, and the commitment fee and anchors it set aside in those it opened), the PSP's available balance; each read given ${railBalanceTimeoutMs} ms, and null with rail_error's code when it does not answer), and the difference, rail_balance less ledger.posted. Every amount of an entry is in that entry's asset, a decimal string in its major unit as account balances are. The operator's credential only.`,
        response: { 200: listView(railBalanceView), "4xx": errorView },
      },
    },
    async (request) => {
      const entries = await railBalances(deps, { balanceTimeoutMs: railBalanceTimeoutMs });
      for (const entry of entries)
        if (!entry.reported.ok)
          request.log.warn(
            {
              rail: entry.rail,
              asset: entry.asset.code,
              code: entry.reported.failure,
              err: entry.reported.cause,
            },
            "a rail did not report its balance",
          );
      return {
        object: "list" as const,
        url: "/v1/rails",
        data: entries.map(presentRailBalance),
        has_more: false,
      };
    },
  );

  app.post(
    "/rails/:rail/capital",
    {
      // The operator's routes take no Idempotency-Key (the idempotency plugin keys by tenant; the operator is none):
      // the reference makes this one idempotent.
      config: { idempotency: "none", errorCodes: capitalRefusals },
      schema: {
        description:
          "Book the operator's own movement of a rail's funds (in: tokens or ETH put into the hot wallet, a channel opened with its capital, a PSP balance topped up; out: taken off), between the rail's capital account and its clearing account in `asset`, so that the clearing account can match what the rail reports. Once per reference on a rail: the same reference and body again answers the same booking (Idempotent-Replayed: true), another body under it is 409 capital_reference_reused. The operator's credential only.",
        params: railParams,
        body: createRailCapitalBody,
        response: { 201: railCapitalView, "4xx": errorView },
      },
    },
    async (request, reply) => {
      const { body } = request;
      const result = await bookRailCapital(deps, {
        rail: request.params.rail,
        asset: body.asset,
        direction: body.direction,
        amount: body.amount,
        reference: body.reference,
        description: body.description ?? null,
      });
      if (!result.ok)
        throw new ApiError(
          result.refusal,
          result.message,
          result.param === undefined ? {} : { param: result.param },
        );
      if (result.replayed) reply.header("Idempotent-Replayed", "true");
      return reply.code(201).send(presentRailCapital(result.booking));
    },
  );
};

export const railRoutes = fp(plugin, {
  name: "switchyard-rails",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
});
