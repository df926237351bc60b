// Every TigerBeetle `code` the gateway writes, in one place: what kind of account an account is, and what kind of
// movement a transfer is. A code is the audit trail's only word for "what was this": two kinds under one code
// cannot be told apart afterwards, so every code here is unique within its table (codes.test.ts), nonzero and
// within TigerBeetle's u16. A code once written is never given to another kind; moving a kind to a new code
// takes a migration that relabels the transfers already stored (gateway/migrations/0008_netting_accrue_code.sql
// did so for netting's accrual, which shared 5 with the invoices' reinstatement).

/** Account codes, by the module that creates the accounts. */
export const accountCodes = {
  /** gateway/accounts: one per AccountKind. */
  gateway: {
    customer: 1,
    merchant: 2,
    /** A rail's clearing account: what sits on that rail (debit-normal). */
    clearing: 10,
    /** A rail's fee account: fees charged to tenants (credits) against fees the rail paid (debits). */
    fee: 20,
    /** A rail's payable account: netted payouts accrued and not yet paid out. */
    payable: 30,
    /** The operator's capital on a rail: what it put there of its own (the gas a hot wallet holds). */
    capital: 50,
  },
  /** gateway/settlement/evm-mirror.ts: the RevenueSplitter's accounts, one set per (chain, splitter, asset). */
  evmMirror: {
    splitterCustody: 11,
    split: 40,
    splitRecipient: 41,
    batchPayouts: 42,
    batchOutflow: 43,
  },
} as const;

/** Transfer codes, by the module that writes the transfers. */
export const transferCodes = {
  /** gateway/payments. */
  payments: {
    /** A payout's reservation (pending), and its post or void (which repeat the pending transfer's code). */
    payment: 1,
    /** Money put on a tenant's account from a rail's clearing account by an operator (demo setup, tests, benches). */
    funding: 2,
    /** A payout's fee hold (pending) on the payer, its post (what the payer is charged) or void. */
    feeCharged: 8,
    /** What the rail really paid in fees, from its fee account to the account it was paid from (clearing). */
    feePaid: 9,
    /** The operator's capital put on a rail (the gas a hot wallet holds when the gateway first sees it). */
    capitalIn: 10,
    /** A cross-asset payout's leg out of the operator's FX capital in the rail's asset (its hold, post or void). */
    fxOut: 11,
    /** The FX spread a cross-asset payout pays the operator's FX desk (its hold, post or void). */
    fxSpread: 12,
    /**
     * What a payout's provider took back from the payee (a Stripe transfer reversal), from the rail's clearing account
     * back to the payer; across assets, from the operator's FX capital in the payer's asset (gateway/settlement).
     */
    payoutReversed: 16,
    /** A cross-asset payout's reversal, from the rail's clearing account back into the operator's FX capital. */
    payoutReversedFx: 17,
  },
  /** gateway/settlement/invoices.ts: money in, and money taken back from it or given back. */
  invoices: {
    received: 3,
    reversed: 4,
    reinstated: 5,
    /** A paywall payee's share of what an invoice received, from the credited account to the payee's. */
    share: 13,
    /**
     * A reversal's shortfall collected (migration 0036): from an account given money back later (a refund of the
     * invoice that failed), what the reversal could not take of it, into the rail's clearing account.
     */
    shortfallCollected: 14,
  },
  /** gateway/payments/batch-payouts.ts: payouts that accrue and leave netted in one batch. */
  netting: {
    /** The payer's account into the rail's payable account. Was 5 (shared with invoices.reinstated) until migration 0008. */
    accrue: 7,
    /** The payable account against the rail's clearing account, once the batch was paid out. */
    batchPaid: 6,
    /** An accrual given back to its payer (the payable account into the payer's), its payee refused by the rail. */
    returned: 15,
  },
  /** gateway/payments/refunds.ts: money given back to a payer. */
  refunds: {
    /** The refunded account into the rail's clearing account (its hold, post or void); internal: back to the payer. */
    refund: 30,
    /** A refund that succeeded and was given back after all (a Stripe refund that failed later). */
    refundUndone: 31,
  },
  /** gateway/settlement/evm-mirror.ts: the RevenueSplitter's events. */
  evmMirror: {
    paid: 20,
    distributed: 21,
    withdrawn: 22,
    batchSettled: 23,
    reorgReversal: 24,
  },
} as const;

/** Every code of a table with the name it goes by (`group.kind`), for checks and for reading the audit trail. */
export function namedCodes(
  table: Readonly<Record<string, Readonly<Record<string, number>>>>,
): Array<{ name: string; code: number }> {
  return Object.entries(table).flatMap(([group, codes]) =>
    Object.entries(codes).map(([kind, code]) => ({ name: `${group}.${kind}`, code })),
  );
}
