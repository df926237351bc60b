// Where money goes. Exactly one kind per destination; the kind decides which rails can reach it. A BOLT11
// invoice has one written form (bareBolt11), so what is stored and what LND is handed are the same string.

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

/**
 * A BOLT11 invoice as it is stored and handed to LND: the bare bech32 string in lower case. BOLT 11 recommends
 * "'lightning:' as a prefix before the BOLT-11 encoding" for URIs (any case: "LIGHTNING:LNBC…" from a QR code);
 * LND's DecodePayReq and SendPaymentV2 refuse it, so it is taken off where an invoice enters (the API's
 * destinations, an LNURL-pay callback's `pr`). null for mixed case, which BIP-173 forbids (LND refuses it too).
 * Nothing else is checked here: parseBolt11 reads the rest.
 */
export function bareBolt11(text: string): string | null {
  const bare = /^lightning:/i.test(text) ? text.slice("lightning:".length) : text;
  const lower = bare.toLowerCase();
  return bare === lower || bare === bare.toUpperCase() ? lower : null;
}
