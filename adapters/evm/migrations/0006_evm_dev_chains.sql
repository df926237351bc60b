-- Development chains only (`npm start` against a `hardhat node` or anvil, gateway/app/dev-chain.ts): per chain, the
-- hot wallet this database's gateway uses there — a Hardhat development account it took (its index) when no key
-- was configured, so two gateways on one node with their own databases never share one — the contracts it
-- deployed there through the Ignition module when none were configured, and the demo's TestUSD mint. A restart on
-- the same database takes the same wallet, deploys nothing and mints nothing again.
CREATE TABLE evm_dev_chains (
  chain_id integer PRIMARY KEY,
  -- lower case
  wallet text NOT NULL,
  -- Hardhat's test mnemonic, m/44'/60'/0'/0/<index>; null: EVM_HOT_WALLET_KEY's
  account_index integer CHECK (account_index >= 0),
  -- what the gateway deployed (null: configured); the splitter is followed from start_block
  test_usd text,
  splitter text,
  forwarder_factory text,
  start_block bigint,
  -- the demo's mint of TestUSD to the hot wallet, credited to the demo customer (gateway/app/demo.ts)
  demo_mint_tx text,
  created_at timestamptz NOT NULL DEFAULT now()
);
