// Where money goes. Exactly one kind per destination; the kind decides which rails can reach it.

export type RailKind = "internal" | "evm" | "lightning" | "fiat";

/** Where a payment goes. Exactly one kind; the kind decides which rails can reach it. */
export type Destination =
  | { kind: "account"; accountId: string } // a Switchyard account: internal rail
  /** A wallet on an EVM chain; with `chainId`, only the rail on that chain pays it. */
  | { kind: "evm_address"; address: `0x${string}`; chainId?: number }
  | { kind: "evm_split"; splitId: `0x${string}` } // a RevenueSplitter split
  | { kind: "bolt11"; invoice: string } // a Lightning invoice
  | { kind: "lightning_node"; pubkey: string } // keysend to a Lightning node
  /** A Lightning Address (name@domain): an invoice is asked of its LNURL-pay server for each payment. */
  | { kind: "lightning_address"; address: string }
  | { kind: "stripe_account"; accountId: string }; // a Stripe Connect account

export type DestinationKind = Destination["kind"];
