// What an API key may do: a closed set of scopes. `read` reads everything; each other scope writes (and reads) its
// resources. A route needs one scope (auth.ts finds it from the route); a read route is open to `read` too.

export const scopes = ["read", "payments", "invoices", "accounts", "webhooks", "keys"] as const;
export type Scope = (typeof scopes)[number];

/** The scopes that write something: each one also reads its own resources. */
export type ResourceScope = Exclude<Scope, "read">;

/** What a route needs: a resource scope, and whether `read` is enough (GET and HEAD). */
export type ScopeRequirement = { scope: ResourceScope; readSuffices: boolean };

export function isScope(text: string): text is Scope {
  return (scopes as readonly string[]).includes(text);
}

/** Whether a key with `granted` may do what `required` asks. */
export function scopeGranted(granted: readonly Scope[], required: ScopeRequirement): boolean {
  return granted.includes(required.scope) || (required.readSuffices && granted.includes("read"));
}

/** The scopes of `wanted` that `granted` lacks: a key cannot give another key more than it has itself. */
export function scopesBeyond(granted: readonly Scope[], wanted: readonly Scope[]): Scope[] {
  return wanted.filter((scope) => !granted.includes(scope));
}

/** The scopes in the order of `scopes`, each once. */
export function normalizedScopes(given: readonly Scope[]): Scope[] {
  return scopes.filter((scope) => given.includes(scope));
}
