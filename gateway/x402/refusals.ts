// Why an x402 payment was not taken: a closed set of stable codes. Where x402 names the reason (the specification's
// list, the reference EVM facilitator's constants, the legacy v1 enum) the code is x402's own, so a resource server
// that passes `invalidReason` / `errorReason` through shows its clients a name they know; the header's own faults
// (too large, repeated) are Switchyard's, beside `invalid_payload`.
export const x402Refusals = [
  // the header and the objects in it
  "invalid_payload",
  "invalid_payload_header_too_large",
  "invalid_payload_header_repeated",
  "invalid_x402_version",
  "unsupported_scheme",
  "invalid_network",
  "invalid_payment_requirements",
  // the `exact` scheme on EVM, in the reference facilitator's order
  "invalid_exact_evm_missing_eip712_domain",
  "invalid_exact_evm_token_name_mismatch",
  "invalid_exact_evm_payload_signature",
  "invalid_exact_evm_payload_recipient_mismatch",
  "invalid_exact_evm_payload_authorization_valid_before",
  "invalid_exact_evm_payload_authorization_valid_after",
  "invalid_exact_evm_payload_authorization_value",
  "invalid_exact_evm_nonce_already_used",
  "insufficient_funds",
  "invalid_exact_evm_transaction_simulation_failed",
  // settlement
  "invalid_transaction_state",
  // sent, its receipt not had in time: the reference facilitator's answer, which its resource server retries once
  "settlement_pending",
  "resource_not_served",
  "unexpected_verify_error",
  "unexpected_settle_error",
] as const;

export type X402Refusal = (typeof x402Refusals)[number];

export type Refused = { readonly ok: false; readonly refusal: X402Refusal; readonly message: string };

export const refusedWith = (refusal: X402Refusal, message: string): Refused => ({
  ok: false,
  refusal,
  message,
});
