// What one tenant may hold of something bounded that every tenant shares: a quarter of it (at least one), so that
// one tenant's burst leaves three quarters to all the others. The API's admission pool (gateway/http/admission.ts),
// the EVM hot wallet's send queue (adapters/evm/send-journal.ts) and Lightning's payments in flight
// (adapters/lightning/send.ts) are bounded so.

/** How many tenants at their bound fill the pool. */
const tenantSharesOfPool = 4;

/** The most of a pool of `poolMax` one tenant may hold: a quarter, rounded up, and at least one. */
export function tenantShareOf(poolMax: number): number {
  return Math.max(1, Math.ceil(poolMax / tenantSharesOfPool));
}
