export { tenantOf } from "./auth.ts";
export { ApiError, type ApiErrorCode, errorStatus } from "./errors.ts";
export { type RailRoutesOptions, railRoutesPlugin } from "./rail-routes.ts";
export { buildServer, type ServerOptions } from "./server.ts";
