// The API error codes of tenants, API keys, scopes and versions, with the HTTP status of each (spread into
// http/errors.ts's Record, so the compiler still finds a code without a status).

export type TenancyErrorCode =
  /** A key of the other mode: sk_test_ keys on a production deployment, sk_live_ on a development one. */
  | "api_key_mode_mismatch"
  /** The key's tenant is suspended by the operator. */
  | "tenant_suspended"
  /** The key lacks the scope the route needs (named in the message and in `scope`). */
  | "scope_missing"
  /** A route of the operator's (/v1/tenants), called with a tenant's key. */
  | "operator_only"
  /** A tenant's route, called with the operator's key. */
  | "tenant_key_required"
  /** Switchyard-Version names no version of the API. */
  | "api_version_invalid"
  | "tenant_not_found"
  | "api_key_not_found"
  /** Revoking or rolling a key that is revoked or past its expiry. */
  | "api_key_revoked"
  /** Rolling a key that was already rolled (it expires at the end of its overlap). */
  | "api_key_rolled"
  /** The tenant has as many active keys as a tenant may have. */
  | "api_keys_too_many";

export const tenancyErrorStatus: Record<TenancyErrorCode, number> = {
  api_key_mode_mismatch: 401,
  tenant_suspended: 403,
  scope_missing: 403,
  operator_only: 403,
  tenant_key_required: 403,
  api_version_invalid: 400,
  tenant_not_found: 404,
  api_key_not_found: 404,
  api_key_revoked: 409,
  api_key_rolled: 409,
  api_keys_too_many: 409,
};
