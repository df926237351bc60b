// Hardhat's in-process chains for `npm start` and the tests: EDR behind an EIP-1193 provider, viem clients
// on it, the contracts deployed through the one deployment path, and the well-known development accounts
// (Hardhat's test mnemonic: never hold real money with them). Several can run side by side (an "L1" and an
// "L2"), each with its own chain id and its own base fee, which it holds block after block.
import {
  type Account,
  type Chain,
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  type EIP1193Provider,
  type Hex,
  numberToHex,
  type PublicClient,
  parseTransaction,
  type Transport,
  toHex,
  type WalletClient,
} from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { type Logger, silentLogger } from "../../core/index.ts";
import { type DeployedContracts, deployContracts } from "./deploy.ts";

type NetworkHelpers = Awaited<ReturnType<typeof import("hardhat")["network"]["create"]>>["networkHelpers"];

export const hardhatMnemonic = "test test test test test test test test test test test junk";

/** A development account's private key: Hardhat's test mnemonic, public, so never for real money. */
export function developmentAccountKey(index: number): Hex {
  const key = mnemonicToAccount(hardhatMnemonic, { addressIndex: index }).getHdKey().privateKey;
  if (key === null) throw new Error(`development account ${index} has no private key`);
  return toHex(key);
}

/** Hardhat's own chain id: the first embedded chain's. */
export const hardhatChainId = 31_337;

export type EmbeddedChain = {
  chain: Chain;
  provider: EIP1193Provider;
  publicClient: PublicClient<Transport, Chain>;
  /** The gateway's hot wallet: development account 0, which also deployed the contracts. */
  walletClient: WalletClient<Transport, Chain, Account>;
  contracts: DeployedContracts;
  /** Development accounts 1 to 9, for payees and payers in demos and tests. */
  accounts: readonly Account[];
  /** The base fee the chain holds (wei per gas). */
  baseFeePerGas: bigint;
  /** Hardhat's network helpers on this chain (mine, takeSnapshot, …): tests use them for confirmations and reorgs. */
  networkHelpers: NetworkHelpers;
  /** Holds another base fee from the next block on (a test of a fee spike). */
  setBaseFeePerGas(wei: bigint): Promise<void>;
  close(): Promise<void>;
};

export type EmbeddedChainOptions = {
  /** Default 31337 (Hardhat's). */
  chainId?: number;
  /** The base fee every block has (wei per gas); default Hardhat's initial 1 gwei. */
  baseFeePerGas?: bigint;
  /** Also mine an empty block this often (0: a block per transaction only, Hardhat's default). */
  blockIntervalMs?: number;
  /** Where a failed interval block is reported; silent by default. */
  logger?: Logger;
};

const hardhatInitialBaseFeePerGas = 1_000_000_000n;

export async function startEmbeddedChain(options: EmbeddedChainOptions = {}): Promise<EmbeddedChain> {
  // Hardhat is a development dependency: loaded only when the embedded chain is asked for.
  const { network } = await import("hardhat");
  const chainId = options.chainId ?? hardhatChainId;
  const baseFee = { wei: options.baseFeePerGas ?? hardhatInitialBaseFeePerGas };
  const connection = await network.create({
    override: { chainId, initialBaseFeePerGas: baseFee.wei },
  } as Parameters<typeof network.create>[0]);
  const inner = connection.provider as unknown as EIP1193Provider;
  const provider = holdingBaseFee(inner, baseFee);
  const chain = defineChain({
    id: chainId,
    name: `Hardhat (in-process, ${chainId})`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [] } },
  });
  const transport = custom(provider);
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 50 });
  const hotWallet = mnemonicToAccount(hardhatMnemonic, { addressIndex: 0 });
  const walletClient = createWalletClient({ chain, transport, account: hotWallet });
  const intervalMiner = startIntervalMining(provider, options.blockIntervalMs ?? 0, options.logger);
  try {
    const contracts = await deployContracts({ walletClient, publicClient });
    const accounts = Array.from({ length: 9 }, (_, i) =>
      mnemonicToAccount(hardhatMnemonic, { addressIndex: i + 1 }),
    );
    return {
      chain,
      provider,
      publicClient,
      walletClient,
      contracts,
      accounts,
      get baseFeePerGas() {
        return baseFee.wei;
      },
      networkHelpers: connection.networkHelpers,
      async setBaseFeePerGas(wei: bigint) {
        baseFee.wei = wei;
        await setNextBaseFee(inner, wei);
      },
      async close() {
        await intervalMiner.stop();
        await connection.close();
      },
    };
  } catch (error) {
    await intervalMiner.stop();
    await connection.close();
    throw error;
  }
}

/**
 * The provider with the chain's base fee held: EIP-1559 lowers it 12.5% a block while blocks are less than half
 * full — nearly always here — and an L1 left alone would cost nothing after a few dozen payouts. So every block
 * this provider mines starts at the held fee, or at a transaction's max fee when that is lower (it would not be
 * mined otherwise; a real chain's base fee also moves). Blocks mined past it (networkHelpers.mine) drift as EIP-1559
 * says until the next one.
 */
function holdingBaseFee(inner: EIP1193Provider, baseFee: { wei: bigint }): EIP1193Provider {
  const request = (async (args: { method: string; params?: unknown }) => {
    if (args.method === "eth_sendRawTransaction") {
      const [raw] = args.params as [Hex];
      const tx = parseTransaction(raw);
      const fee = tx.maxFeePerGas ?? tx.gasPrice ?? baseFee.wei;
      const underpriced = fee < baseFee.wei;
      await setNextBaseFee(inner, underpriced ? fee : baseFee.wei);
    } else if (args.method === "evm_mine") await setNextBaseFee(inner, baseFee.wei);
    return inner.request(args as Parameters<EIP1193Provider["request"]>[0]);
  }) as EIP1193Provider["request"];
  // viem's custom transport asks only `request`; events (on/removeListener) are the inner provider's.
  return {
    request,
    on: (...args: Parameters<EIP1193Provider["on"]>) => inner.on(...args),
    removeListener: (...args: Parameters<EIP1193Provider["removeListener"]>) => inner.removeListener(...args),
  } as EIP1193Provider;
}

function setNextBaseFee(provider: EIP1193Provider, wei: bigint): Promise<unknown> {
  return provider.request({
    method: "hardhat_setNextBlockBaseFeePerGas",
    params: [numberToHex(wei)],
  } as never);
}

/** Mines an empty block (at the held base fee) every `intervalMs`; one at a time. */
function startIntervalMining(
  provider: EIP1193Provider,
  intervalMs: number,
  logger: Logger = silentLogger,
): { stop(): Promise<void> } {
  if (intervalMs <= 0) return { stop: async () => undefined };
  let mining: Promise<void> = Promise.resolve();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    mining = provider
      .request({ method: "evm_mine", params: [] } as never)
      .then(
        () => undefined,
        (error: unknown) =>
          logger.warn({ error: String(error) }, "the embedded chain's interval block failed"),
      )
      .finally(() => {
        busy = false;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await mining;
    },
  };
}

// ---- the embedded chain over JSON-RPC, for wallets (MetaMask, viem, ethers, x402 clients)

/** The largest JSON-RPC request body the served chain reads (a batch of signed transactions fits). */
const rpcBodyBytesMax = 4 * 1024 * 1024;
/** The most calls in one JSON-RPC batch. */
const rpcBatchCallsMax = 100;
const rpcRequestTimeoutMs = 30_000;

export type ServedChain = { url: string; close(): Promise<void> };

/** A JSON-RPC error as the spec has it: a code, a message, and the node's data (a revert's) when there is one. */
type RpcError = { code: number; message: string; data?: unknown };

/**
 * Serves an embedded chain's provider over HTTP JSON-RPC at host:port (POST, single calls and batches, CORS open:
 * a development chain for browsers too). Every call goes through the same provider the gateway uses, so the
 * base fee it holds holds for wallets as well. Rejects when the port cannot be taken (EADDRINUSE).
 */
export async function serveChainRpc(
  provider: EIP1193Provider,
  params: { host: string; port: number },
): Promise<ServedChain> {
  const { createServer } = await import("node:http");
  const call = async (message: unknown): Promise<Record<string, unknown>> => {
    const request = message as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    const id = request?.id ?? null;
    if (typeof request !== "object" || request === null || typeof request.method !== "string")
      return { jsonrpc: "2.0", id, error: { code: -32600, message: "invalid request" } };
    try {
      const result = await provider.request({
        method: request.method,
        params: Array.isArray(request.params) ? request.params : [],
      } as never);
      return { jsonrpc: "2.0", id, result: result ?? null };
    } catch (error) {
      return { jsonrpc: "2.0", id, error: rpcErrorOf(error) };
    }
  };
  const server = createServer((req, res) => {
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.setHeader("Access-Control-Allow-Headers", "content-type");
    res.setHeader("Access-Control-Allow-Methods", "POST, OPTIONS");
    if (req.method === "OPTIONS") return void res.writeHead(204).end();
    if (req.method !== "POST") return void res.writeHead(405, { Allow: "POST, OPTIONS" }).end();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > rpcBodyBytesMax) {
        res.writeHead(413).end();
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      if (res.writableEnded) return;
      const reply = (body: unknown) =>
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body));
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch (error) {
        reply({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32700, message: `parse error: ${String(error)}` },
        });
        return;
      }
      if (!Array.isArray(parsed)) return void call(parsed).then(reply);
      if (parsed.length === 0 || parsed.length > rpcBatchCallsMax)
        return void reply({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32600, message: `a batch of 1 to ${rpcBatchCallsMax} calls` },
        });
      // In order: a wallet's batch may send a transaction and then read what it changed.
      void (async () => {
        const answers = [];
        for (const message of parsed) answers.push(await call(message));
        reply(answers);
      })();
    });
  });
  server.requestTimeout = rpcRequestTimeoutMs;
  server.headersTimeout = rpcRequestTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(params.port, params.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    // The port taken (port 0: one the system chose).
    url: `http://${params.host}:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/** The provider's error as JSON-RPC has it: EDR's errors carry the code and a revert's data. */
function rpcErrorOf(error: unknown): RpcError {
  const { code, message, data } = (error ?? {}) as { code?: unknown; message?: unknown; data?: unknown };
  return {
    code: typeof code === "number" ? code : -32603,
    message: typeof message === "string" ? message : String(error),
    ...(data === undefined ? {} : { data }),
  };
}
