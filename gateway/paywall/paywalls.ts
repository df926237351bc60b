// Paywalls: a tenant's priced resources (POST /v1/paywalls). Each names a resource path (exact, or a prefix ending
// in `*`), a price in any asset, the ways to pay it (a scheme on a rail: x402 on an EVM rail, l402 on lightning),
// the tenant's account that is credited in each asset offered, an optional split to its payees' accounts, and
// what an L402 token buys. Every read and write is scoped to its tenant: another tenant's paywall is as unknown
// as one that does not exist. Expected refusals are values (PaywallErrorCode), checked in a fixed order: the
// resource and the split's sum first (no store asked), then the offers against the schemes (the price too among
// them: one a scheme could never ask for), then the accounts, then the split's payees.
import { type Asset, assetByCode, basisPointsTotal } from "../../core/index.ts";
import { type Db, type Sql, serverSqlState } from "../db/index.ts";
import { newId } from "../ids/index.ts";
import type { RateSource } from "../router/index.ts";
import { convertPrice } from "./price.ts";
import type { PaymentScheme } from "./scheme.ts";

/** One way to pay: a scheme (`x402`, `l402`) on one of the gateway's rails. */
export type PaywallOffer = { readonly scheme: string; readonly rail: string };

/** A payee's share, and the payee's account in each asset the paywall is paid in (read when the paywall is written). */
export type PaywallSplitShare = {
  readonly payeeId: string;
  readonly basisPoints: number;
  readonly accounts: Readonly<Record<string, string>>;
};

export type Paywall = {
  readonly id: string;
  readonly tenantId: string;
  /** `/path` (exact) or `/prefix/*` (every path that starts with `/prefix/`). */
  readonly resource: string;
  readonly description: string;
  readonly mimeType: string;
  readonly price: { readonly asset: Asset; readonly amount: bigint };
  readonly offers: readonly PaywallOffer[];
  /** The tenant's account credited in each asset offered, by asset code. */
  readonly accounts: Readonly<Record<string, string>>;
  readonly split: readonly PaywallSplitShare[];
  readonly tokenLifetimeSeconds: number;
  /** How many requests one L402 token opens; null: any number until it expires. */
  readonly tokenRequestsMax: number | null;
  readonly metadata: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
};

export type PaywallErrorCode =
  | "paywall_not_found"
  | "paywall_resource_taken"
  | "paywall_scheme_unavailable"
  | "paywall_account_missing"
  | "paywall_split_invalid"
  | "paywall_verdict_not_found"
  | "paywalls_too_many";

export const paywallErrorStatus: Record<PaywallErrorCode, number> = {
  paywall_not_found: 404,
  paywall_resource_taken: 409,
  paywall_scheme_unavailable: 400,
  paywall_account_missing: 400,
  paywall_split_invalid: 400,
  paywall_verdict_not_found: 404,
  paywalls_too_many: 409,
};

export type PaywallRefusal =
  | PaywallErrorCode
  | "account_not_found"
  | "payee_not_found"
  | "unknown_asset"
  | "amount_not_a_decimal"
  | "amount_not_positive"
  | "amount_too_precise"
  | "amount_too_large"
  | "parameter_invalid";

export type PaywallResult =
  | { ok: true; paywall: Paywall }
  | { ok: false; refusal: PaywallRefusal; message: string; param?: string };

export type PaywallsDeps = {
  sql: Db;
  accounts: {
    tenantAccount(params: { tenantId: string; id: string }): Promise<{ id: string; asset: Asset } | null>;
  };
  /** The schemes this gateway offers, and through them which rails each can be paid on. */
  schemes: readonly PaymentScheme[];
  /**
   * What a price in another asset than an offer's is converted at, to check it against what the offer's rail takes
   * (offerPriceRefusal); absent: such a price is not checked.
   */
  rates?: Pick<RateSource, "usdRate">;
  nowMs: () => number;
};

/** What a create writes; an update gives any of these and keeps the rest. */
export type PaywallFields = {
  resource: string;
  description: string;
  mimeType: string;
  price: { asset: Asset; amount: bigint };
  offers: readonly PaywallOffer[];
  accountIds: readonly string[];
  split: readonly { payeeId: string; basisPoints: number }[];
  tokenLifetimeSeconds: number;
  tokenRequestsMax: number | null;
  metadata: Record<string, string>;
};

export const paywallResourceLengthMax = 500;
export const paywallOffersMax = 8;
export const paywallSplitSharesMax = 10;
export const paywallTokenLifetimeSecondsDefault = 3_600;
export const paywallTokenLifetimeSecondsMax = 30 * 24 * 3_600;
export const paywallsListLimitMax = 100;

/**
 * A path of printable characters without query, fragment or `;` (Fastify may end the path there: pathOf does);
 * `*` only as the last character (a prefix). Written so that the API document can state it as it is (no lookaround,
 * no Unicode classes).
 */
export const paywallResourcePattern = /^\/[A-Za-z0-9\-._~!$&'()+,=:@%/]*\*?$/;

export function isPaywallResource(text: string): boolean {
  return text.length <= paywallResourceLengthMax && paywallResourcePattern.test(text);
}

type PaywallRow = {
  id: string;
  tenant_id: string;
  resource: string;
  description: string;
  mime_type: string;
  price_asset: string;
  price_amount: bigint | string;
  offers: unknown;
  accounts: unknown;
  split: unknown;
  token_lifetime_seconds: number;
  token_requests_max: number | null;
  metadata: unknown;
  created_at: Date;
  updated_at: Date;
};

const columns =
  "id, tenant_id, resource, description, mime_type, price_asset, price_amount, offers, accounts, split, token_lifetime_seconds, token_requests_max, metadata, created_at, updated_at";

function fromJson<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

function fromRow(row: PaywallRow): Paywall {
  const asset = assetByCode(row.price_asset);
  if (asset === null) throw new RangeError(`paywall ${row.id}: unknown asset ${row.price_asset}`);
  return {
    id: row.id,
    tenantId: row.tenant_id,
    resource: row.resource,
    description: row.description,
    mimeType: row.mime_type,
    price: { asset, amount: BigInt(row.price_amount) },
    offers: fromJson<PaywallOffer[]>(row.offers),
    accounts: fromJson<Record<string, string>>(row.accounts),
    split: fromJson<PaywallSplitShare[]>(row.split),
    tokenLifetimeSeconds: row.token_lifetime_seconds,
    tokenRequestsMax: row.token_requests_max,
    metadata: fromJson<Record<string, string>>(row.metadata),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

type Refused = Extract<PaywallResult, { ok: false }>;
type Checked = { ok: true; accounts: Record<string, string>; split: PaywallSplitShare[] };

/** A paywall's fields as the columns resource … metadata take them, in that order (create and update alike). */
function fieldValues(fields: PaywallFields, checked: Checked): (string | number | null)[] {
  return [
    fields.resource,
    fields.description,
    fields.mimeType,
    fields.price.asset.code,
    fields.price.amount.toString(),
    JSON.stringify(fields.offers),
    JSON.stringify(checked.accounts),
    JSON.stringify(checked.split),
    fields.tokenLifetimeSeconds,
    fields.tokenRequestsMax,
    JSON.stringify(fields.metadata),
  ];
}

/** The asset each offer is paid in, or why an offer cannot be made. */
function offerAssets(schemes: readonly PaymentScheme[], offers: readonly PaywallOffer[]): Asset[] | Refused {
  const seen = new Set<string>();
  const found: Asset[] = [];
  for (const [index, offer] of offers.entries()) {
    const key = `${offer.scheme}\u0000${offer.rail}`;
    if (seen.has(key))
      return {
        ok: false,
        refusal: "parameter_invalid",
        message: "an offer is listed twice",
        param: `offers.${index}`,
      };
    seen.add(key);
    const scheme = schemes.find((candidate) => candidate.id === offer.scheme);
    const asset = scheme?.assetFor(offer.rail) ?? null;
    if (scheme === undefined || asset === null)
      return {
        ok: false,
        refusal: "paywall_scheme_unavailable",
        message: `this gateway offers no ${offer.scheme} payments on rail "${offer.rail}"`,
        param: `offers.${index}`,
      };
    const sibling = offers.findIndex((other) => other.scheme === offer.scheme);
    if (sibling < index && found[sibling]?.code !== asset.code)
      return {
        ok: false,
        refusal: "paywall_scheme_unavailable",
        message: `${offer.scheme} offers on one paywall are paid in one asset (${found[sibling]?.code}, not ${asset.code})`,
        param: `offers.${index}`,
      };
    found.push(asset);
  }
  return found;
}

/**
 * The first offer whose scheme could never ask for the price (termsRefusal: an L402 token's price × its requests above
 * what one Lightning invoice takes), in the offer's asset: exact for a price in it; for a price in another asset, at
 * the rate now, converted as the price locks convert it (rounded up), a rate moving later being the 402's to meet;
 * not checked without a rate.
 */
function offerPriceRefusal(
  deps: PaywallsDeps,
  fields: PaywallFields,
  offered: readonly Asset[],
): Refused | null {
  for (const [index, offer] of fields.offers.entries()) {
    const scheme = deps.schemes.find((candidate) => candidate.id === offer.scheme);
    const asset = offered[index];
    if (scheme?.termsRefusal === undefined || asset === undefined) continue;
    const amount =
      fields.price.asset.code === asset.code
        ? fields.price.amount
        : deps.rates === undefined
          ? null
          : convertPrice(deps.rates, { amount: fields.price.amount, from: fields.price.asset, to: asset });
    if (amount === null) continue;
    const refusal = scheme.termsRefusal(
      offer.rail,
      { asset, amount },
      { lifetimeSeconds: fields.tokenLifetimeSeconds, requestsMax: fields.tokenRequestsMax },
    );
    if (refusal === null) continue;
    const converted = fields.price.asset.code === asset.code ? "" : " at the rate now";
    const counted = fields.tokenRequestsMax !== null;
    return {
      ok: false,
      refusal: "amount_too_large",
      message: `${offer.scheme} on ${offer.rail}: ${refusal}${converted}: lower the price${counted ? " or l402.token_requests_max" : ""}`,
      param: counted ? "l402.token_requests_max" : "price.amount",
    };
  }
  return null;
}

async function checkFields(
  deps: PaywallsDeps,
  tenantId: string,
  fields: PaywallFields,
): Promise<Checked | Refused> {
  if (!isPaywallResource(fields.resource))
    return {
      ok: false,
      refusal: "parameter_invalid",
      message: "resource is a path starting with /, optionally ending in * (a prefix)",
      param: "resource",
    };
  const bps = fields.split.reduce((sum, share) => sum + BigInt(share.basisPoints), 0n);
  if (
    bps > basisPointsTotal ||
    new Set(fields.split.map((share) => share.payeeId)).size !== fields.split.length
  )
    return {
      ok: false,
      refusal: "paywall_split_invalid",
      message: "a split names each payee once and its basis points sum to at most 10000",
      param: "split",
    };
  const offered = offerAssets(deps.schemes, fields.offers);
  if (!Array.isArray(offered)) return offered;
  const unpriceable = offerPriceRefusal(deps, fields, offered);
  if (unpriceable !== null) return unpriceable;
  const assetCodes = [...new Set(offered.map((asset) => asset.code))];
  const accounts: Record<string, string> = {};
  for (const [index, id] of fields.accountIds.entries()) {
    const account = await deps.accounts.tenantAccount({ tenantId, id });
    if (account === null)
      return {
        ok: false,
        refusal: "account_not_found",
        message: `no account "${id}"`,
        param: `accounts.${index}`,
      };
    if (!assetCodes.includes(account.asset.code) || accounts[account.asset.code] !== undefined)
      return {
        ok: false,
        refusal: "paywall_account_missing",
        message: `account ${id} holds ${account.asset.code}: give one account for each asset offered (${assetCodes.join(", ")})`,
        param: `accounts.${index}`,
      };
    accounts[account.asset.code] = id;
  }
  const missing = assetCodes.find((code) => accounts[code] === undefined);
  if (missing !== undefined)
    return {
      ok: false,
      refusal: "paywall_account_missing",
      message: `no account in ${missing}, which an offer is paid in`,
      param: "accounts",
    };
  const split: PaywallSplitShare[] = [];
  for (const [index, share] of fields.split.entries()) {
    const resolved = await splitAccounts(deps, { tenantId, payeeId: share.payeeId, assetCodes });
    if (resolved === null)
      return {
        ok: false,
        refusal: "payee_not_found",
        message: `no payee "${share.payeeId}"`,
        param: `split.${index}.payee`,
      };
    const lacking = assetCodes.find((code) => resolved[code] === undefined);
    if (lacking !== undefined)
      return {
        ok: false,
        refusal: "paywall_split_invalid",
        message: `payee ${share.payeeId} has no account method in ${lacking}, which an offer is paid in`,
        param: `split.${index}.payee`,
      };
    const shared = split.find((other) => assetCodes.some((code) => other.accounts[code] === resolved[code]));
    if (shared !== undefined)
      return {
        ok: false,
        refusal: "paywall_split_invalid",
        message: `payees ${shared.payeeId} and ${share.payeeId} are paid to the same account: name it once, with both shares`,
        param: `split.${index}.payee`,
      };
    split.push({ payeeId: share.payeeId, basisPoints: share.basisPoints, accounts: resolved });
  }
  return { ok: true, accounts, split };
}

/** A payee's `account` methods by asset (the first in each asset), or null when the tenant has no such payee. */
async function splitAccounts(
  deps: PaywallsDeps,
  params: { tenantId: string; payeeId: string; assetCodes: readonly string[] },
): Promise<Record<string, string> | null> {
  const rows = await deps.sql.query<{ methods: unknown }>(
    "SELECT methods FROM payees WHERE id = $1 AND tenant_id = $2",
    [params.payeeId, params.tenantId],
  );
  if (rows[0] === undefined) return null;
  const found: Record<string, string> = {};
  for (const method of fromJson<{ kind: string; accountId?: string }[]>(rows[0].methods)) {
    if (method.kind !== "account" || method.accountId === undefined) continue;
    const account = await deps.accounts.tenantAccount({ tenantId: params.tenantId, id: method.accountId });
    if (account === null || !params.assetCodes.includes(account.asset.code)) continue;
    found[account.asset.code] ??= account.id;
  }
  return found;
}

/** Whether the server refused a write as a unique violation (a server's error's SQLSTATE, not any `code`). */
function isUniqueViolation(error: unknown): boolean {
  return serverSqlState(error) === "23505";
}

const taken = (resource: string): Refused => ({
  ok: false,
  refusal: "paywall_resource_taken",
  message: `another paywall covers "${resource}"`,
  param: "resource",
});

export async function addPaywall(
  deps: PaywallsDeps,
  params: { tenantId: string; fields: PaywallFields },
): Promise<PaywallResult> {
  const { fields } = params;
  const checked = await checkFields(deps, params.tenantId, fields);
  if (!checked.ok) return checked;
  const nowMs = deps.nowMs();
  try {
    return await deps.sql.transaction(async (tx): Promise<PaywallResult> => {
      // The tenant's row locked, so that two at once cannot both take the last place: a request is matched
      // against at most paywallsPerTenantMax paywalls (tenantPaywalls), and one past them would be served free.
      await tx.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [params.tenantId]);
      const [held] = await tx.query<{ count: number }>(
        "SELECT count(*)::int AS count FROM paywalls WHERE tenant_id = $1",
        [params.tenantId],
      );
      if (Number(held!.count) >= paywallsPerTenantMax)
        return {
          ok: false,
          refusal: "paywalls_too_many",
          message: `a tenant has at most ${paywallsPerTenantMax} paywalls: delete one, or cover several resources with a prefix (/reports/*)`,
        };
      const rows = await tx.query<PaywallRow>(
        `INSERT INTO paywalls (${columns})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING ${columns}`,
        [
          newId("pwl", nowMs),
          params.tenantId,
          ...fieldValues(fields, checked),
          new Date(nowMs).toISOString(),
        ],
      );
      return { ok: true, paywall: fromRow(rows[0]!) };
    });
  } catch (error) {
    if (isUniqueViolation(error)) return taken(fields.resource);
    throw error;
  }
}

export async function getPaywall(
  sql: Sql,
  params: { tenantId: string; id: string },
): Promise<Paywall | null> {
  const rows = await sql.query<PaywallRow>(
    `SELECT ${columns} FROM paywalls WHERE id = $1 AND tenant_id = $2`,
    [params.id, params.tenantId],
  );
  return rows[0] === undefined ? null : fromRow(rows[0]);
}

/** Every paywall of the tenant, for matching requests (at most paywallsPerTenantMax: addPaywall refuses more). */
export async function tenantPaywalls(sql: Sql, params: { tenantId: string }): Promise<Paywall[]> {
  const rows = await sql.query<PaywallRow>(
    `SELECT ${columns} FROM paywalls WHERE tenant_id = $1 ORDER BY id LIMIT ${paywallsPerTenantMax}`,
    [params.tenantId],
  );
  return rows.map(fromRow);
}

/** The most paywalls a request is matched against (one tenant's). */
export const paywallsPerTenantMax = 1_000;

/** Replaces what is given and keeps the rest; the whole is checked again. A price change drops the locked rates. */
export async function updatePaywall(
  deps: PaywallsDeps,
  params: { tenantId: string; id: string; fields: Partial<PaywallFields> },
): Promise<PaywallResult> {
  const current = await getPaywall(deps.sql, params);
  if (current === null)
    return { ok: false, refusal: "paywall_not_found", message: `no paywall "${params.id}"` };
  const fields: PaywallFields = {
    resource: current.resource,
    description: current.description,
    mimeType: current.mimeType,
    price: current.price,
    offers: current.offers,
    accountIds: Object.values(current.accounts),
    split: current.split,
    tokenLifetimeSeconds: current.tokenLifetimeSeconds,
    tokenRequestsMax: current.tokenRequestsMax,
    metadata: { ...current.metadata },
    ...params.fields,
  };
  const checked = await checkFields(deps, params.tenantId, fields);
  if (!checked.ok) return checked;
  try {
    const rows = await deps.sql.query<PaywallRow>(
      `WITH dropped AS (DELETE FROM paywall_rate_locks WHERE paywall_id = $1)
       UPDATE paywalls SET resource = $3, description = $4, mime_type = $5, price_asset = $6, price_amount = $7,
         offers = $8, accounts = $9, split = $10, token_lifetime_seconds = $11, token_requests_max = $12,
         metadata = $13, updated_at = $14
       WHERE id = $1 AND tenant_id = $2 RETURNING ${columns}`,
      [params.id, params.tenantId, ...fieldValues(fields, checked), new Date(deps.nowMs()).toISOString()],
    );
    if (rows[0] === undefined)
      return { ok: false, refusal: "paywall_not_found", message: `no paywall "${params.id}"` };
    return { ok: true, paywall: fromRow(rows[0]) };
  } catch (error) {
    if (isUniqueViolation(error)) return taken(fields.resource);
    throw error;
  }
}

/** Deletes the tenant's paywall (and its locked rates); false when there is none. */
export async function deletePaywall(sql: Sql, params: { tenantId: string; id: string }): Promise<boolean> {
  const rows = await sql.query<{ id: string }>(
    "DELETE FROM paywalls WHERE id = $1 AND tenant_id = $2 RETURNING id",
    [params.id, params.tenantId],
  );
  return rows.length === 1;
}
