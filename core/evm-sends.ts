// The EVM rail's send journal (adapters/evm send-journal.ts, evm_sends.attempt_id) keys a send by what it pays for;
// the keys the gateway looks a send up by too (x402's reconciliation in gateway/x402, the send-gas booker in
// gateway/settlement) are named here, for the rail that writes them and the gateway that reads them to spell alike.

/** The journal's key prefix of an x402 batch: `x402-batch:<the key gateway/x402 batch.ts named it by>`. */
export const x402BatchSendKeyPrefix = "x402-batch:";
