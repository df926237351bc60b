// /v1/accounts: the tenant's balances. Create (a customer or merchant account in USDC, USD or BTC; with an
// Idempotency-Key, claimed first as on most creates), retrieve (with its balance), list (the list convention of
// ../lists.ts; filters `asset` and `kind`), its balance alone, and its transactions: the ledger's view of the
// account, each transfer with its state, kind, counterparty, what it belongs to and the rail's evidence, newest
// first, the cursor a transaction id. Another tenant's account is not found, never forbidden; a rail's own
// accounts (clearing, fee, …) are no tenant's.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { type Asset, formatAmount, SwitchyardError } from "../../../core/index.ts";
import {
  type AccountCache,
  type AccountTransaction,
  accountNameLengthMax,
  accountTransactions,
  type Balance,
  balanceOf,
  createTenantAccount,
  getTenantAccountDetail,
  type TenantAccount,
  type TenantAccountRow,
  tenantAccountAsset,
  tenantAccountAssets,
  tenantAccountColumns,
  tenantAccountFromRow,
  tenantAccountKinds,
} from "../../accounts/index.ts";
import type { Db } from "../../db/index.ts";
import type { Ledger } from "../../ledger/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError, type ApiErrorCode } from "../errors.ts";
import { clientGone, listPage, listParams, listQuery, listView } from "../lists.ts";
import { balanceView, errorView, idParams, listingAssets, metadataSchema, withoutNul } from "../schemas.ts";

export type AccountRoutesOptions = { db: Db; accounts: AccountCache; ledger: Ledger };

/** A route's business refusals, for the OpenAPI document (openapi.ts files each under its status). */
const refusals = (...codes: ApiErrorCode[]): Record<never, never> => ({ "x-error-codes": codes });

const assetCodes = tenantAccountAssets.map((asset) => asset.code) as [string, ...string[]];

export const createAccountBody = z.strictObject({
  asset: listingAssets(z.string().max(12), assetCodes),
  kind: z.enum(tenantAccountKinds),
  name: z.string().min(1).max(accountNameLengthMax).regex(withoutNul, "no NUL character").optional(),
  metadata: metadataSchema.optional(),
});

const amounts = {
  available: z.string(),
  posted: z.string(),
  pending_out: z.string(),
  pending_in: z.string(),
};

export const accountView = z.object({
  id: z.string(),
  object: z.literal("account"),
  asset: z.string(),
  kind: z.enum(tenantAccountKinds),
  name: z.string(),
  /** As GET /v1/accounts/:id/balance says, in the asset's major unit. */
  balance: z.object(amounts),
  metadata: z.record(z.string(), z.string()),
  created_at: z.string(),
});
export type AccountView = z.infer<typeof accountView>;

export const listAccountsQuery = listQuery({
  idPrefix: "acct",
  extra: { asset: z.enum(assetCodes).optional(), kind: z.enum(tenantAccountKinds).optional() },
});

/** A transaction's id: `txn_` and its ledger transfer's 128-bit id in 32 hex digits. */
const transactionIdPattern = /^txn_[0-9a-f]{32}$/;
const transactionId = (transferId: bigint) => `txn_${transferId.toString(16).padStart(32, "0")}`;

// The cursors' shape is in the schema, so the document states it: a refinement after the fact left the document
// saying `txn_[0-9a-z_]{1,64}`, and a fuzzer's `txn_0` was a schema-valid request refused.
export const listTransactionsQuery = listQuery({
  idPrefix: "txn",
  cursor: { pattern: transactionIdPattern, message: "a transaction id (txn_ and 32 hex digits)" },
});

export const transactionView = z.object({
  id: z.string(),
  object: z.literal("account_transaction"),
  account: z.string(),
  asset: z.string(),
  /** debit: out of the account; credit: into it. */
  direction: z.enum(["debit", "credit"]),
  /** Always positive, in the asset's major unit; `direction` says which way. */
  amount: z.string(),
  /** single: moved at once; pending: a hold; post_pending / void_pending: a hold settled or let go. */
  phase: z.enum(["single", "pending", "post_pending", "void_pending"]),
  /** posted; pending (a hold still open); voided or expired (a hold let go). */
  status: z.enum(["posted", "pending", "voided", "expired"]),
  /** The hold a post or void settles. */
  pending_transaction: z.string().nullable(),
  /** The ledger's transfer code and its name (payments.payment, invoices.received, …). */
  code: z.number().int(),
  kind: z.string().nullable(),
  counterparty: z.object({
    /** customer, merchant (the tenant's), clearing, fee, payable, capital (a rail's), ledger (other). */
    kind: z.string(),
    /** Only when it is one of the tenant's own accounts. */
    account: z.string().nullable(),
    rail: z.string().nullable(),
  }),
  payment: z.string().nullable(),
  invoice: z.string().nullable(),
  refund: z.string().nullable(),
  /** What the rail says happened: its name, a reference (a transaction hash, a preimage, a PSP id), details. */
  evidence: z
    .object({ rail: z.string(), reference: z.string(), detail: z.record(z.string(), z.string()) })
    .nullable(),
  created_at: z.string(),
});

function presentAmounts(account: TenantAccount, balance: Balance) {
  const format = (value: bigint) => formatAmount(value, account.asset);
  return {
    available: format(balance.available),
    posted: format(balance.posted),
    pending_out: format(balance.pendingOut),
    pending_in: format(balance.pendingIn),
  };
}

/** `balance`: its ledger account's (balanceOf); an account just opened has nothing yet. */
export function presentAccount(account: TenantAccount, balance: Balance): AccountView {
  if (account.kind !== "customer" && account.kind !== "merchant")
    throw new SwitchyardError("a tenant's account is neither customer nor merchant", {
      details: `account ${account.id} is ${account.kind}`,
    });
  return {
    id: account.id,
    object: "account",
    asset: account.asset.code,
    kind: account.kind,
    name: account.name,
    balance: presentAmounts(account, balance),
    metadata: account.metadata,
    created_at: account.createdAt.toISOString(),
  };
}

const nothingYet: Balance = { posted: 0n, pendingOut: 0n, pendingIn: 0n, available: 0n };

/** Each account with its ledger account, read in one lookup. */
async function presentAccounts(ledger: Ledger, accounts: readonly TenantAccount[]): Promise<AccountView[]> {
  const ledgerAccounts = await ledger.lookupAccounts(accounts.map((account) => account.ledgerAccountId));
  const byId = new Map(ledgerAccounts.map((ledgerAccount) => [ledgerAccount.id, ledgerAccount]));
  return accounts.map((account) => {
    const ledgerAccount = byId.get(account.ledgerAccountId);
    if (ledgerAccount === undefined)
      throw new SwitchyardError("an account has no ledger account", { details: `account ${account.id}` });
    return presentAccount(account, balanceOf(account.kind, ledgerAccount));
  });
}

async function presentOne(ledger: Ledger, account: TenantAccount): Promise<AccountView> {
  const [view] = await presentAccounts(ledger, [account]);
  if (view === undefined) throw new SwitchyardError("an account was not presented", { details: account.id });
  return view;
}

function presentTransaction(
  account: TenantAccount,
  transaction: AccountTransaction,
): z.infer<typeof transactionView> {
  const asset: Asset = account.asset;
  return {
    id: transactionId(transaction.transferId),
    object: "account_transaction",
    account: account.id,
    asset: asset.code,
    direction: transaction.direction,
    amount: formatAmount(transaction.amount, asset),
    phase: transaction.phase,
    status: transaction.status,
    pending_transaction:
      transaction.pendingTransferId === null ? null : transactionId(transaction.pendingTransferId),
    code: transaction.code,
    kind: transaction.kind,
    counterparty: {
      kind: transaction.counterparty.kind,
      account: transaction.counterparty.accountId,
      rail: transaction.counterparty.rail,
    },
    payment: transaction.paymentId,
    invoice: transaction.invoiceId,
    refund: transaction.refundId,
    evidence:
      transaction.evidence === null
        ? null
        : {
            rail: transaction.evidence.rail,
            reference: transaction.evidence.reference,
            detail: transaction.evidence.detail ?? {},
          },
    created_at: new Date(Number(transaction.timestampNs / 1_000_000n)).toISOString(),
  };
}

const nsPerSecond = 1_000_000_000n;
/** The last whole second the ledger's nanosecond timestamps (int8) can hold. */
const ledgerTimestampSecondsMax = Number((2n ** 63n - 1n) / 1_000_000_000n);

const plugin: FastifyPluginAsyncZod<AccountRoutesOptions> = async (app, options) => {
  const accountOf = async (tenantId: string, id: string): Promise<TenantAccount> => {
    const account = await getTenantAccountDetail(options.db, { tenantId, id });
    if (account === null) throw new ApiError("account_not_found", `no account "${id}"`);
    return account;
  };

  app.post(
    "/accounts",
    {
      schema: {
        body: createAccountBody,
        response: { 201: accountView, "4xx": errorView },
        ...refusals("unknown_asset"),
      },
    },
    async (request, reply) => {
      const { body } = request;
      const asset = tenantAccountAsset(body.asset);
      if (asset === null)
        throw new ApiError(
          "unknown_asset",
          `an account holds one of ${assetCodes.join(", ")}, not "${body.asset}"`,
          { param: "asset" },
        );
      const account = await createTenantAccount(
        { sql: options.db, ledger: options.ledger },
        {
          tenantId: tenantOf(request).id,
          kind: body.kind,
          asset,
          name: body.name ?? "",
          metadata: body.metadata ?? {},
        },
      );
      // Just opened, so empty: presented without reading its balance back (accounts.ts createTenantAccount).
      return reply.code(201).send(presentAccount(account, nothingYet));
    },
  );

  app.get(
    "/accounts/:id",
    { schema: { params: idParams("acct"), response: { 200: accountView, "4xx": errorView } } },
    async (request) => {
      const account = await accountOf(tenantOf(request).id, request.params.id);
      return presentOne(options.ledger, account);
    },
  );

  app.get(
    "/accounts",
    {
      schema: { querystring: listAccountsQuery, response: { 200: listView(accountView), "4xx": errorView } },
    },
    async (request) => {
      const { query } = request;
      return listPage(
        options.db,
        {
          table: "accounts",
          tenantColumn: "tenant_id",
          columns: tenantAccountColumns,
          noun: "account",
          equals: { asset: query.asset, kind: query.kind },
          mapPage: (rows: TenantAccountRow[]) =>
            presentAccounts(options.ledger, rows.map(tenantAccountFromRow)),
        },
        {
          tenantId: tenantOf(request).id,
          url: "/v1/accounts",
          params: listParams(query),
          gone: clientGone(request),
        },
      );
    },
  );

  app.get(
    "/accounts/:id/balance",
    { schema: { params: idParams("acct"), response: { 200: balanceView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const account = await options.accounts.tenantAccount({ tenantId: tenantOf(request).id, id });
      if (account === null) throw new ApiError("account_not_found", `no account "${id}"`);
      const [ledgerAccount] = await options.ledger.lookupAccounts([account.ledgerAccountId]);
      if (ledgerAccount === undefined)
        throw new SwitchyardError("an account has no ledger account", { details: `account ${id}` });
      const balance = balanceOf(account.kind, ledgerAccount);
      const format = (value: bigint) => formatAmount(value, account.asset);
      return {
        object: "balance" as const,
        account: account.id,
        asset: account.asset.code,
        available: format(balance.available),
        posted: format(balance.posted),
        pending_out: format(balance.pendingOut),
        pending_in: format(balance.pendingIn),
      };
    },
  );

  app.get(
    "/accounts/:id/transactions",
    {
      schema: {
        params: idParams("acct"),
        querystring: listTransactionsQuery,
        response: { 200: listView(transactionView), "4xx": errorView },
      },
    },
    async (request) => {
      const account = await accountOf(tenantOf(request).id, request.params.id);
      const params = listParams(request.query);
      // Past the ledger's last nanosecond (int8, in 2262) every bound is the same bound: clamped, not sent on to overflow.
      const seconds = (value: number | null) =>
        value === null ? null : BigInt(Math.min(value, ledgerTimestampSecondsMax)) * nsPerSecond;
      const page = await accountTransactions(
        { sql: options.db, ledger: options.ledger },
        {
          account,
          limit: params.limit,
          cursor:
            params.cursor === null
              ? null
              : { direction: params.cursor.direction, transferId: BigInt(`0x${params.cursor.id.slice(4)}`) },
          createdFromNs: seconds(params.createdFromSeconds),
          createdUntilNs: seconds(params.createdUntilSeconds),
        },
      );
      if (page === "cursor_not_found")
        throw new ApiError("parameter_invalid", `no transaction "${params.cursor?.id}" of this account`, {
          param: params.cursor?.param ?? "starting_after",
        });
      return {
        object: "list" as const,
        url: `/v1/accounts/${account.id}/transactions`,
        data: page.transactions.map((transaction) => presentTransaction(account, transaction)),
        has_more: page.hasMore,
      };
    },
  );
};

export const accountRoutes = fp(plugin, {
  name: "switchyard-accounts",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
