import { createRequire } from "node:module";
import hardhatIgnitionViem from "@nomicfoundation/hardhat-ignition-viem";
import hardhatNetworkHelpers from "@nomicfoundation/hardhat-network-helpers";
import hardhatViem from "@nomicfoundation/hardhat-viem";
import { defineConfig } from "hardhat/config";

// The compiler comes from the `solc` npm package so that nothing is downloaded at build time.
const require = createRequire(import.meta.url);
const solcVersion: string = require("solc/package.json").version;

export default defineConfig({
  plugins: [hardhatViem, hardhatNetworkHelpers, hardhatIgnitionViem],
  // `--network localhost`: a `hardhat node` at 127.0.0.1:8545, or at HARDHAT_NODE_URL (the tests' node on a free port).
  networks: { localhost: { type: "http", url: process.env.HARDHAT_NODE_URL ?? "http://127.0.0.1:8545" } },
  solidity: {
    version: solcVersion,
    path: require.resolve("solc/soljson.js"),
    settings: { optimizer: { enabled: true, runs: 10_000 }, evmVersion: "cancun" },
  },
  paths: { sources: "./contracts", tests: { solidity: "./contracts" } },
  // Fixed seed: the fuzz and invariant runs are the same on every machine.
  test: {
    solidity: {
      fuzz: { seed: "0x5eed", runs: 256 },
      invariant: { runs: 64, depth: 40, failOnRevert: false },
    },
  },
});
