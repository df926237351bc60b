// Tenants, their API keys (scopes, modes, roll and revoke), the operator's credential, the key authenticator with
// its 1-second bound, and the API's dated versions.
export {
  type ApiKeyCacheLimits,
  type ApiKeyPrincipal,
  type Authenticator,
  apiKeyCacheDefaults,
  apiKeyTrustMsMax,
  authenticate,
  createAuthenticator,
  type KeyCheck,
} from "./authenticator.ts";
export { type TenancyErrorCode, tenancyErrorStatus } from "./codes.ts";
export {
  type ApiKeyRecord,
  type ApiKeyRow,
  apiKeyChecksumLength,
  apiKeyChecksumOf,
  apiKeyColumns,
  apiKeyOfRow,
  apiKeySecretOf,
  apiKeysActiveMax,
  type CreateApiKeyParams,
  createApiKey,
  ensureDemoApiKey,
  getApiKey,
  hasValidChecksum,
  type IssueRefusal,
  issueApiKey,
  type KeyMode,
  modeOfSecret,
  type RevokeResult,
  type RollResult,
  revokeApiKey,
  revokeTenantApiKey,
  rollApiKey,
  rollOverlapSecondsDefault,
  rollOverlapSecondsMax,
} from "./keys.ts";
export {
  ensureOperatorKey,
  isOperatorKey,
  type OperatorKeyBootstrap,
  OperatorKeyError,
  operatorKeyPattern,
} from "./operator.ts";
export {
  isScope,
  normalizedScopes,
  type ResourceScope,
  type Scope,
  type ScopeRequirement,
  scopeGranted,
  scopes,
  scopesBeyond,
} from "./scopes.ts";
export {
  createTenant,
  createTenantWithKey,
  getTenant,
  listTenants,
  setTenantStatus,
  type Tenant,
  type TenantListParams,
  type TenantRecord,
  type TenantStatus,
} from "./tenants.ts";
export { type ApiVersion, apiVersions, currentApiVersion, isApiVersion } from "./versions.ts";
