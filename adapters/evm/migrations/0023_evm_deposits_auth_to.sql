-- The `to` of the authorization an invoice is bound to (lower case, as auth_from): the hot wallet when it was bound
-- (authorizations.ts, x402-batch.ts), the only wallet that takes it. The deposit watcher credits an authorization's
-- transfer to it (deposit-source.ts invoiceOf), and x402's reconciliation judges the sent authorization by it. Before,
-- both took the hot wallet of now: once the operator rotated its key, an authorization bound before (the payer signed
-- `to` = the old wallet) and mined after was never credited, and reconciliation failed it as spent on other terms,
-- though the money reached a wallet the operator holds. Cleared when the invoice gives its payer back.
-- Filled for the rows bound before from the send journal: the signer of the authorization's send (its key with the
-- chain id or the one before, 0011's `wallet`) is the hot wallet that sent it, its `to`. A binding with no such send
-- (refused before sending, a batch's item, a send journaled before 0011) stays NULL, read as the hot wallet of now:
-- what every row was read as before, and the migration cannot tell which wallet was the hot wallet then. A send whose
-- signer could not be recovered (send-gas.ts recoverWallets: wallet '') names none either.
ALTER TABLE evm_deposits ADD COLUMN IF NOT EXISTS auth_to text;
UPDATE evm_deposits d SET auth_to = s.wallet
FROM evm_sends s
WHERE d.auth_from IS NOT NULL AND d.auth_to IS NULL AND s.wallet IS NOT NULL AND s.wallet <> '' AND s.chain_id = d.chain_id
  AND s.attempt_id IN (
    'transfer-auth:' || d.chain_id::text || ':' || d.auth_from || ':' || d.auth_nonce,
    'transfer-auth:' || d.auth_from || ':' || d.auth_nonce,
    'receive-auth:' || d.chain_id::text || ':' || d.auth_from || ':' || d.auth_nonce,
    'receive-auth:' || d.auth_from || ':' || d.auth_nonce
  );
