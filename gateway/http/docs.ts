// The API reference at GET /docs: Swagger UI (@fastify/swagger-ui) over the OpenAPI document, without an API
// key. Every file the page loads — the HTML, Swagger UI's script, styles and icons, the document (/docs/json, the
// same object as /openapi.json) — comes from this server, out of node_modules: no CDN, no font service, and the
// page's Content-Security-Policy lets the browser load nothing from another origin. Swagger UI's online validator
// badge is off (it would send the document to validator.swagger.io).
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyPluginAsync } from "fastify";

export const docsPath = "/docs";

/** Nothing from another origin; Swagger UI sets element styles inline, so inline styles (not scripts) are allowed. */
export const docsContentSecurityPolicy = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'",
].join("; ");

/** Registered after the OpenAPI plugin (it reads @fastify/swagger's document), as a sibling of /v1. */
export const docsPlugin: FastifyPluginAsync = async (app) => {
  await app.register(swaggerUi, {
    routePrefix: docsPath,
    staticCSP: docsContentSecurityPolicy,
    validatorUrl: false,
    theme: { title: "Switchyard API reference" },
    uiConfig: { deepLinking: true, displayOperationId: false, tryItOutEnabled: false },
  });
};
