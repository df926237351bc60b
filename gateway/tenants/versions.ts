// The API's dated versions, oldest first. A key is pinned to the version current when it was made; a request may
// name another with Switchyard-Version (gateway/http/versioning.ts). A version is added when a change would break a
// client (a field renamed or removed, a new required parameter, another status or error code for the same case);
// additions that break nobody (a new route, a new optional parameter, a new field in a response) ship in every
// version. A version is never removed while a key is pinned to it.

export type ApiVersion = { version: string; summary: string };

export const apiVersions: readonly ApiVersion[] = [
  {
    version: "2026-11-23",
    summary:
      "The first dated version: tenants, scoped API keys, lists with Stripe's conventions, refunds, accounts.",
  },
];

/** The newest version: what a key made now is pinned to, and what answers a request without a key. */
export const currentApiVersion: string = apiVersions.at(-1)!.version;

export function isApiVersion(text: string): boolean {
  return apiVersions.some((entry) => entry.version === text);
}
