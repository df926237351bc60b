// The EVM rail's send journal (adapters/evm send-journal.ts, evm_sends.attempt_id) keys a send by what it pays for;
// the keys the gateway looks a send up by too (x402's reconciliation in gateway/x402, the send-gas booker in
// gateway/settlement) are named here, for the rail that writes them and the gateway that reads them to spell alike.

/** The journal's key prefix of an x402 batch: `x402-batch:<the key gateway/x402 batch.ts named it by>`. */
export const x402BatchSendKeyPrefix = "x402-batch:";

/**
 * The keys a transfer authorization's send is journaled under (adapters/evm authorizations.ts submit), in SQL, for
 * `attempt_id IN (…)`: `transfer-auth:<chain id>:<payer>:<nonce>`, and the key before the chain id was in it, which a
 * send stored then keeps. `chainId`, `from` and `nonce` are SQL expressions (parameters, columns), the payer and nonce
 * lower case as evm_deposits and x402_authorizations keep them. One spelling for the rail's binding of an invoice and
 * x402's reconciliation, so that neither misses a send under the other key.
 */
export const transferSendKeysSql = (chainId: string, from: string, nonce: string): string =>
  `'transfer-auth:' || ${chainId}::text || ':' || ${from} || ':' || ${nonce}, 'transfer-auth:' || ${from} || ':' || ${nonce}`;
