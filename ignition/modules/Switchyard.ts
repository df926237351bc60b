// Switchyard's contracts, the Hardhat Ignition way: TestUSD (a USDC-like token anyone may mint: local chains
// only), RevenueSplitter, and the ForwarderFactory of USDC deposit addresses, whose sweeps go to `owner` — the
// gateway's hot wallet. `npx hardhat ignition deploy ignition/modules/Switchyard.ts --network localhost` writes
// the addresses to ignition/deployments/chain-<id>/deployed_addresses.json, which the gateway reads
// (EVM_IGNITION_DEPLOYMENT); `npm start` on a development chain with no addresses deploys this module itself.
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

export default buildModule("SwitchyardModule", (m) => {
  // USDC's EIP-712 domain (name "USD Coin", version "2") unless told otherwise: EIP-3009 signatures made for USDC verify.
  const name = m.getParameter("testUsdName", "USD Coin");
  const symbol = m.getParameter("testUsdSymbol", "TUSD");
  const version = m.getParameter("testUsdVersion", "2");
  const owner = m.getParameter("owner", m.getAccount(0));
  const testUsd = m.contract("TestUSD", [name, symbol, version]);
  const splitter = m.contract("RevenueSplitter", []);
  const forwarderFactory = m.contract("ForwarderFactory", [owner]);
  return { testUsd, splitter, forwarderFactory };
});
