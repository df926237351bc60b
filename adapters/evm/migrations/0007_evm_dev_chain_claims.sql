-- Development chains: how this database knows the node it recorded is the node it talks to. claim_tx is the
-- transaction by which the gateway took its Hardhat development account there (nonce 0, a random payload, so no
-- other node's claim has its hash): found on the node, the account is this database's; missing (a fresh `hardhat
-- node`), the account is claimed again when the node has it unused, and refused when another gateway took it.
-- demo_mint_raw is the demo mint, signed and kept before it is sent (demo_mint_tx its hash), so a start after a
-- crash between the two sends that transaction again rather than minting twice.
ALTER TABLE evm_dev_chains ADD COLUMN claim_tx text;
ALTER TABLE evm_dev_chains ADD COLUMN demo_mint_raw text;
