-- An EIP-3009 nonce is its authorizer's own (the token keeps authorizationState per authorizer and nonce), so two
-- payers may sign the same nonce. The invoice bound to an authorization is therefore unique by payer and nonce, not
-- by nonce alone: with the nonce alone, a second payer's authorization with a nonce another invoice holds was refused
-- at settlement, after the paywall had run its route, and the nonce of anyone's settled payment blocked every other
-- payer who chose it. The deposit watcher already finds an invoice by both (deposit-source.ts invoiceOf).
-- An unbound invoice (auth_from NULL) keeps the nonce derived from its reference, unique by construction.
DROP INDEX evm_deposits_nonce;
CREATE UNIQUE INDEX evm_deposits_nonce ON evm_deposits (chain_id, token, auth_nonce, auth_from);
