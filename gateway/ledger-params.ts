// The ledger as the gateway runs it (gateway/app.ts), and as the tests that drive the gateway's services on a ledger
// of their own make it, so that they see what the app sees.
import type { CreateLedgerParams } from "./ledger/index.ts";

/**
 * Transient failures retryable, not TigerBeetle's sticky rule (gateway/ledger/README.md): the gateway derives its
 * transfers' ids from its own records (a reservation's from its attempt, a receipt's from its invoice and key), keeps
 * its own idempotency above the ledger (a payment refused for funds is recorded failed, and its key replays that), and
 * asks a derived id again once the state changed: a rail's event delivered again once the account it credits exists,
 * recovery's accrual of a payment whose request found the payer short (gateway/payments/batch-payouts.test.ts). Under
 * the sticky rule such an id would be refused for good after its first transient failure.
 */
export const gatewayLedgerParams = {
  transientFailures: "retryable",
} as const satisfies Partial<CreateLedgerParams>;
