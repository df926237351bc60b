import path from "node:path";
import { describe, expect, it } from "vitest";
import { productionEnv } from "../../test/support/config.ts";
import { ConfigError, gweiToWei, loadConfig, withStartDefaults } from "./config.ts";

const gwei = 1_000_000_000n;
const key = `0x${"11".repeat(32)}`;
const token = `0x${"22".repeat(20)}`;

describe("EVM chains in the configuration", () => {
  it("with nothing set: one embedded chain, rail evm on 31337, at Hardhat's 1 gwei, with an L1's gas policy", () => {
    const { chains } = loadConfig({}).evm;
    expect(chains).toEqual([
      {
        id: "evm",
        confirmations: 1,
        gas: { priorityFeeWei: 1n * gwei, maxFeeWei: 200n * gwei },
        replaceAfterMs: 120_000,
        source: { kind: "embedded", chainId: 31_337, baseFeeWei: 1n * gwei, blockIntervalMs: 0 },
      },
    ]);
  });

  it("npm start's defaults make it an L1 (25 gwei) and add an embedded L2 (evm-l2, chain 31338, 0.01 gwei)", () => {
    const { chains } = loadConfig(withStartDefaults({})).evm;
    expect(chains.map((chain) => chain.id)).toEqual(["evm", "evm-l2"]);
    expect(chains[0]?.source).toMatchObject({ kind: "embedded", chainId: 31_337, baseFeeWei: 25n * gwei });
    expect(chains[1]).toEqual({
      id: "evm-l2",
      confirmations: 1,
      gas: { priorityFeeWei: 1_000_000n, maxFeeWei: 1n * gwei },
      replaceAfterMs: 120_000,
      source: { kind: "embedded", chainId: 31_338, baseFeeWei: 10_000_000n, blockIntervalMs: 0 },
    });
    // Not on top of a chain the operator configured.
    expect(withStartDefaults({ EVM_RPC_URL: "http://node:8545" }).EVM_CHAINS).toBeUndefined();
    expect(withStartDefaults({ EVM_CHAINS: "[]" }).EVM_CHAINS).toBe("[]");
  });

  it("the single-chain variables still make the first chain, with its gas policy", () => {
    const { chains } = loadConfig({
      EVM_RPC_URL: "http://node:8545",
      EVM_HOT_WALLET_KEY: key,
      EVM_TOKEN_ADDRESS: token,
      EVM_CONFIRMATIONS: "3",
      EVM_PRIORITY_FEE_GWEI: "1.5",
      EVM_MAX_FEE_GWEI: "80",
      EVM_REPLACE_AFTER_MS: "30000",
    }).evm;
    expect(chains).toEqual([
      {
        id: "evm",
        confirmations: 3,
        gas: { priorityFeeWei: 1_500_000_000n, maxFeeWei: 80n * gwei },
        replaceAfterMs: 30_000,
        source: {
          kind: "rpc",
          url: "http://node:8545",
          chainId: null,
          hotWalletKey: key,
          tokenAddress: token,
          splitter: null,
          forwarderFactory: null,
        },
      },
    ]);
  });

  it("EVM_CHAINS adds RPC chains, each with its own policy, key (or EVM_HOT_WALLET_KEY), splitter and deposit factory", () => {
    const { chains } = loadConfig({
      EVM_HOT_WALLET_KEY: key,
      EVM_CHAINS: JSON.stringify([
        {
          id: "evm-base",
          rpc_url: "https://base.example/rpc",
          chain_id: 8453,
          token,
          splitter: token,
          splitter_start_block: "12",
          forwarder_factory: key.slice(0, 42),
          confirmations: 2,
          priority_fee_gwei: "0.001",
          max_fee_gwei: "0.5",
          replace_after_ms: 60_000,
        },
      ]),
    }).evm;
    expect(chains[1]).toEqual({
      id: "evm-base",
      confirmations: 2,
      gas: { priorityFeeWei: 1_000_000n, maxFeeWei: 500_000_000n },
      replaceAfterMs: 60_000,
      source: {
        kind: "rpc",
        url: "https://base.example/rpc",
        chainId: 8453,
        hotWalletKey: key,
        tokenAddress: token,
        splitter: { address: token, startBlock: 12n },
        forwarderFactory: key.slice(0, 42),
      },
    });
  });

  it("EVM_RPC_URL alone is a development chain: the wallet and the contracts are the gateway's to choose", () => {
    const [first] = loadConfig({ EVM_RPC_URL: "http://127.0.0.1:8545" }).evm.chains;
    expect(first?.source).toEqual({
      kind: "rpc",
      url: "http://127.0.0.1:8545",
      chainId: null,
      hotWalletKey: null,
      tokenAddress: null,
      splitter: null,
      forwarderFactory: null,
    });
  });

  it("EVM_IGNITION_DEPLOYMENT names the contracts by an Ignition folder, or its id under ignition/deployments/", () => {
    const source = (setting: string) =>
      loadConfig({ EVM_RPC_URL: "http://127.0.0.1:8545", EVM_IGNITION_DEPLOYMENT: setting }).evm.chains[0]
        ?.source;
    expect(source("chain-31337")).toMatchObject({
      ignitionDeployment: path.resolve("ignition/deployments/chain-31337"),
      tokenAddress: null,
    });
    expect(source("/tmp/deployments/mine")).toMatchObject({ ignitionDeployment: "/tmp/deployments/mine" });
    expect(() =>
      loadConfig({
        EVM_RPC_URL: "http://127.0.0.1:8545",
        EVM_IGNITION_DEPLOYMENT: "chain-31337",
        EVM_TOKEN_ADDRESS: token,
      }),
    ).toThrow(/set it or their addresses, not both/);
    // An address without the token and the key is half a configuration, as before.
    expect(() => loadConfig({ EVM_RPC_URL: "http://127.0.0.1:8545", EVM_SPLITTER_ADDRESS: token })).toThrow(
      /EVM_RPC_URL needs EVM_HOT_WALLET_KEY and EVM_TOKEN_ADDRESS/,
    );
    // Production never deploys a token of its own: a forgotten EVM_TOKEN_ADDRESS (or an Ignition deployment, whose
    // TestUSD anyone may mint) stops the start.
    for (const extra of [
      {},
      { EVM_HOT_WALLET_KEY: `0x${"11".repeat(32)}` },
      { EVM_IGNITION_DEPLOYMENT: "chain-1" },
    ])
      expect(() =>
        loadConfig({ SWITCHYARD_MODE: "production", EVM_RPC_URL: "http://127.0.0.1:8545", ...extra }),
      ).toThrow(/EVM_RPC_URL needs EVM_HOT_WALLET_KEY and EVM_TOKEN_ADDRESS/);
  });

  it("refuses production on records in memory or on an embedded chain, as npm start would be given them", () => {
    const own = productionEnv;
    expect(loadConfig(withStartDefaults(own)).mode).toBe("production");
    // Before: started on an in-memory PGlite, and on Hardhat chains whose TestUSD anyone may mint as its USDC.
    expect(() => loadConfig(withStartDefaults({ ...own, DATABASE_URL: undefined }))).toThrow(/DATABASE_URL/);
    expect(
      loadConfig({ ...own, DATABASE_URL: undefined, PGLITE_DIR: "/var/lib/switchyard" }).database,
    ).toEqual({
      kind: "pglite",
      dataDir: "/var/lib/switchyard",
      thread: true,
    });
    expect(
      loadConfig({ ...own, DATABASE_URL: undefined, PGLITE_DIR: "/var/lib/switchyard", PGLITE_THREAD: "off" })
        .database,
    ).toEqual({ kind: "pglite", dataDir: "/var/lib/switchyard", thread: false });
    expect(() => loadConfig({ ...own, DATABASE_URL: undefined, PGLITE_THREAD: "yes" })).toThrow(
      /PGLITE_THREAD/,
    );
    expect(() =>
      loadConfig(withStartDefaults({ SWITCHYARD_MODE: "production", DATABASE_URL: own.DATABASE_URL })),
    ).toThrow(/evm, evm-l2 would be an embedded Hardhat chain/);
    expect(() =>
      loadConfig({ ...own, EVM_CHAINS: JSON.stringify([{ id: "evm-l2", chain_id: 31_338 }]) }),
    ).toThrow(/evm-l2 would be an embedded Hardhat chain/);
  });

  it("refuses production with nothing to price ETH (an EVM rail's gas) by, or BTC with LND", () => {
    const { PRICE_FEEDS: _feeds, ...withoutRates } = productionEnv;
    // Before: started, and every EVM route was excluded for want of ETH's rate.
    expect(() => loadConfig(withoutRates)).toThrow(
      /nothing gives ETH's: set PRICE_FEEDS \("ETH"\) or RATES_HTTP_URL/,
    );
    expect(loadConfig({ ...withoutRates, RATES_HTTP_URL: "https://rates.example.com/usd" }).mode).toBe(
      "production",
    );
    expect(() =>
      loadConfig({
        ...productionEnv,
        LND_SOCKET: "127.0.0.1:10009",
        LND_CERT_BASE64: Buffer.from("cert").toString("base64"),
        LND_MACAROON_BASE64: Buffer.from("macaroon").toString("base64"),
      }),
    ).toThrow(/nothing gives BTC's/);
  });

  it("serves the embedded chains to wallets at 127.0.0.1:8545 unless EVM_EMBEDDED_RPC_PORT says otherwise", () => {
    expect(loadConfig({}).embeddedRpc).toEqual({ host: "127.0.0.1", port: 8545 });
    expect(loadConfig({ EVM_EMBEDDED_RPC_PORT: "9545" }).embeddedRpc).toEqual({
      host: "127.0.0.1",
      port: 9545,
    });
    expect(loadConfig({ EVM_EMBEDDED_RPC_PORT: "off" }).embeddedRpc).toBeNull();
    expect(() => loadConfig({ EVM_EMBEDDED_RPC_PORT: "http" })).toThrow(ConfigError);
  });

  it("reads whole numbers in decimal digits only: an empty PORT is refused, not any free port", () => {
    expect(loadConfig({ PORT: "0" }).port).toBe(0);
    expect(loadConfig({ PORT: "08080" }).port).toBe(8080);
    for (const value of ["", " 8080", "8080 ", "0x1f90", "8e3", "8080.0", "-1", "65536"])
      expect(() => loadConfig({ PORT: value }), JSON.stringify(value)).toThrow(/PORT: /);
    expect(() => loadConfig({ EVM_EMBEDDED_RPC_PORT: "" })).toThrow(/EVM_EMBEDDED_RPC_PORT/);
    expect(() => loadConfig({ REQUEST_TIMEOUT_MS: "" })).toThrow(/REQUEST_TIMEOUT_MS: /);
    expect(() => loadConfig({ EVM_SPLITTER_START_BLOCK: "" })).toThrow(/EVM_SPLITTER_START_BLOCK: /);
    const rpc = {
      EVM_RPC_URL: "http://127.0.0.1:1",
      EVM_HOT_WALLET_KEY: `0x${"22".repeat(32)}`,
      EVM_TOKEN_ADDRESS: `0x${"33".repeat(20)}`,
      EVM_SPLITTER_ADDRESS: `0x${"11".repeat(20)}`,
    };
    const source = loadConfig({ ...rpc, EVM_SPLITTER_START_BLOCK: "12" }).evm.chains[0]!.source;
    expect(source.kind === "rpc" ? source.splitter?.startBlock : null).toBe(12n);
    expect(() => loadConfig({ ...rpc, EVM_SPLITTER_START_BLOCK: "0x0c" })).toThrow(
      /EVM_SPLITTER_START_BLOCK: /,
    );
    expect(() => loadConfig({ LIGHTNING_EXECUTE_WAIT_MS: "" })).toThrow(/LIGHTNING_EXECUTE_WAIT_MS/);
    // A host that could never be listened on is refused before anything starts, not by listen's ENOTFOUND.
    expect(loadConfig({ HOST: "0.0.0.0" }).host).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "::" }).host).toBe("::");
    expect(() => loadConfig({ HOST: "no such host!" })).toThrow(/HOST: /);
    expect(() => loadConfig({ HOST: "" })).toThrow(/HOST: /);
    expect(() => loadConfig({ LND_SOCKET: "127.0.0.1:99999" })).toThrow(/LND_SOCKET/);
    expect(() => loadConfig({ STRIPE_REQUEST_TIMEOUT_MS: "1e4" })).toThrow(/STRIPE_REQUEST_TIMEOUT_MS/);
  });

  it("refuses a duration a timer cannot hold (over 2^31 − 1 ms) rather than firing it at once", () => {
    const most = String(2 ** 31 - 1);
    for (const name of [
      "REQUEST_TIMEOUT_MS",
      "DATABASE_STATEMENT_TIMEOUT_MS",
      "RATES_MAX_AGE_MS",
      "RATES_REFRESH_MS",
      "NETTING_INTERVAL_MS",
      "WEBHOOK_DELIVERY_INTERVAL_MS",
    ]) {
      expect(() => loadConfig({ [name]: most }), name).not.toThrow();
      expect(() => loadConfig({ [name]: String(2 ** 31) }), name).toThrow(new RegExp(`${name}: `));
    }
    expect(loadConfig({ WEBHOOK_DELIVERY_INTERVAL_MS: most }).webhookDeliveryIntervalMs).toBe(2 ** 31 - 1);
  });

  it.each([
    ["not JSON", "[", /EVM_CHAINS is not JSON/],
    ["a rail id outside evm-…", JSON.stringify([{ id: "l2" }]), /EVM_CHAINS\.0\.id/],
    ["the id twice", JSON.stringify([{ id: "evm-a" }, { id: "evm-a", chain_id: 5 }]), /used twice/],
    [
      "a chain id twice",
      JSON.stringify([{ id: "evm-a", chain_id: 31_337 }]),
      /chain id 31337 is another chain's/,
    ],
    [
      "an RPC chain without a token",
      JSON.stringify([{ id: "evm-a", rpc_url: "http://x:1" }]),
      /needs a token/,
    ],
    [
      "gwei with 10 decimals",
      JSON.stringify([{ id: "evm-a", max_fee_gwei: "0.0000000001" }]),
      /max_fee_gwei/,
    ],
    [
      "a tip above the cap",
      JSON.stringify([{ id: "evm-a", priority_fee_gwei: "2", max_fee_gwei: "1" }]),
      /max fee/,
    ],
    ["an unknown field", JSON.stringify([{ id: "evm-a", rpc: "http://x:1" }]), /EVM_CHAINS\.0/],
  ])("refuses EVM_CHAINS with %s", (_name, value, message) => {
    expect(() => loadConfig({ EVM_CHAINS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ EVM_CHAINS: value })).toThrow(message);
  });
});

describe("gweiToWei", () => {
  it("is exact to the wei", () => {
    expect(gweiToWei("25")).toBe(25n * gwei);
    expect(gweiToWei("0.01")).toBe(10_000_000n);
    expect(gweiToWei("0.000000001")).toBe(1n);
    expect(gweiToWei("1.5")).toBe(1_500_000_000n);
  });
});

describe("netting and rates in the configuration", () => {
  it("nets by default: a payout whose fee is above half its value accrues; `off` pays every payout alone", () => {
    expect(loadConfig({}).netting).toMatchObject({ maxFeeShareBps: 5_000 });
    expect(loadConfig({ NETTING_MAX_FEE_SHARE_BPS: "1000" }).netting).toMatchObject({
      maxFeeShareBps: 1_000,
    });
    expect(loadConfig({ NETTING_MAX_FEE_SHARE_BPS: "off" }).netting).toBeNull();
    expect(() => loadConfig({ NETTING_MAX_FEE_SHARE_BPS: "0" })).toThrow();
  });

  it("lets two rate sources be 5 % apart by default before neither is used; RATES_DISAGREEMENT_MAX_BPS sets it", () => {
    expect(loadConfig({}).rates.disagreementMaxBps).toBe(500);
    expect(loadConfig({ RATES_DISAGREEMENT_MAX_BPS: "150" }).rates.disagreementMaxBps).toBe(150);
    for (const bad of ["0", "10001", "2.5", "5%"])
      expect(() => loadConfig({ RATES_DISAGREEMENT_MAX_BPS: bad })).toThrow();
  });

  it("reads the netting batch's total as a bigint of minor units, from 1, in decimal digits only", () => {
    expect(loadConfig({}).netting?.batchTotal).toBe(100_000_000n);
    expect(loadConfig({ NETTING_BATCH_TOTAL: "999999999999999999" }).netting?.batchTotal).toBe(
      999_999_999_999_999_999n,
    );
    for (const refused of ["0", "", " 5", "1e6", "0x10", "1000000000000000000"])
      expect(() => loadConfig({ NETTING_BATCH_TOTAL: refused }), refused).toThrow(/NETTING_BATCH_TOTAL/);
  });

  it("reads price feeds as a JSON object of asset code to address, and refuses anything else", () => {
    const feeds = { ETH: `0x${"33".repeat(20)}`, BTC: `0x${"44".repeat(20)}` };
    expect(loadConfig({ PRICE_FEEDS: JSON.stringify(feeds) }).rates).toMatchObject({
      priceFeeds: feeds,
      httpUrl: null,
      maxAgeMs: 3_600_000,
    });
    expect(loadConfig({}).rates.priceFeeds).toBeNull();
    expect(() => loadConfig({ PRICE_FEEDS: "{not json" })).toThrow(ConfigError);
    expect(() => loadConfig({ PRICE_FEEDS: JSON.stringify({ ETH: "0x12" }) })).toThrow(ConfigError);
  });
});
