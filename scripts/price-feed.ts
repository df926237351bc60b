// `npm run price-feed -- ETH 3100.25 [--feed 0x…]`: posts a new answer (USD per whole unit, a plain decimal) to the
// asset's PriceFeed (contracts/PriceFeed.sol) on EVM_RPC_URL, signed with EVM_HOT_WALLET_KEY (the feed's owner:
// the account that deployed it). The feed is --feed, or the asset's entry in PRICE_FEEDS (JSON: {"ETH": "0x…"}).
// `npm run price-feed -- deploy [ETH=3000 BTC=100000]`: deploys a feed per asset (default: ETH at $3,000 and BTC
// at $100,000) and prints PRICE_FEEDS as JSON. Prints what it did as JSON; `npm run compile` must have run.
// `npm start` deploys the feeds on its embedded chain itself (deployPriceFeeds, from gateway/rates) and prints this
// command for them, with the chain's URL and the key of their owner.
import { type Address, createPublicClient, createWalletClient, http, isAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { assetByCode } from "../core/index.ts";
import { rpcCommandFailure } from "../gateway/app/secrets.ts";
import {
  deployPriceFeeds,
  devPriceFeedSpecs,
  type PriceFeedClients,
  type PriceFeedSpec,
  updatePriceFeed,
} from "../gateway/rates/index.ts";

const rpcTimeoutMs = 30_000;
export const priceFeedUsage = [
  "usage: EVM_RPC_URL=… EVM_HOT_WALLET_KEY=0x… npm run price-feed -- <asset> <usd> [--feed 0x…]",
  '       (the feed: --feed, or PRICE_FEEDS=\'{"ETH": "0x…"}\')',
  "   or: EVM_RPC_URL=… EVM_HOT_WALLET_KEY=0x… npm run price-feed -- deploy [ETH=3000 BTC=100000]",
].join("\n");

export type PriceFeedCommand =
  | { readonly kind: "update"; readonly assetCode: string; readonly usd: string; readonly feed: Address }
  | { readonly kind: "deploy"; readonly specs: readonly PriceFeedSpec[] };

/** The command the arguments name, or why they name none (the usage follows). */
export function parsePriceFeedArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): PriceFeedCommand | { readonly error: string } {
  if (argv[0] === "deploy") {
    const specs: PriceFeedSpec[] = [];
    for (const arg of argv.slice(1)) {
      const [assetCode, usd, extra] = arg.split("=");
      if (
        assetCode === undefined ||
        usd === undefined ||
        extra !== undefined ||
        assetByCode(assetCode) === null
      )
        return { error: `not ASSET=USD with a known asset: ${arg}` };
      specs.push({ assetCode, usd });
    }
    return { kind: "deploy", specs: specs.length === 0 ? devPriceFeedSpecs : specs };
  }
  const [assetCode, usd, flag, feedArg, ...rest] = argv;
  if (assetCode === undefined || usd === undefined || rest.length > 0)
    return { error: "expected <asset> <usd>" };
  if (assetByCode(assetCode) === null) return { error: `unknown asset ${assetCode}` };
  if (flag !== undefined && (flag !== "--feed" || feedArg === undefined))
    return { error: `unexpected ${flag}` };
  const feed = feedArg ?? feedFromEnv(env.PRICE_FEEDS, assetCode);
  if (feed === undefined) return { error: `no feed for ${assetCode}: pass --feed or set PRICE_FEEDS` };
  if (!isAddress(feed, { strict: false }))
    return { error: `the feed for ${assetCode} is not an address: ${feed}` };
  return { kind: "update", assetCode, usd, feed };
}

function feedFromEnv(json: string | undefined, assetCode: string): string | undefined {
  if (json === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    console.error(`PRICE_FEEDS is not JSON (${error instanceof Error ? error.message : String(error)})`);
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || !Object.hasOwn(parsed, assetCode)) return undefined;
  const value = (parsed as Record<string, unknown>)[assetCode];
  return typeof value === "string" ? value : undefined;
}

/** Runs a parsed command with the given clients; what it did, printable as JSON. */
export async function runPriceFeedCommand(
  clients: PriceFeedClients,
  command: PriceFeedCommand,
): Promise<Record<string, unknown>> {
  if (command.kind === "deploy") return { PRICE_FEEDS: await deployPriceFeeds(clients, command.specs) };
  const update = await updatePriceFeed(clients, { feed: command.feed, usd: command.usd });
  return {
    asset: command.assetCode,
    feed: command.feed,
    usd: command.usd,
    roundId: update.roundId.toString(),
    answer: update.answer.toString(),
    txHash: update.txHash,
  };
}

async function main(argv: readonly string[]): Promise<void> {
  const url = process.env.EVM_RPC_URL;
  const key = process.env.EVM_HOT_WALLET_KEY;
  const command = parsePriceFeedArgs(argv, process.env);
  if ("error" in command || !url || !key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
    if ("error" in command) console.error(command.error);
    console.error(priceFeedUsage);
    process.exitCode = 2;
    return;
  }
  const transport = http(url, { timeout: rpcTimeoutMs });
  const publicClient = createPublicClient({ transport });
  const walletClient = createWalletClient({ transport, account: privateKeyToAccount(key as `0x${string}`) });
  const result = await runPriceFeedCommand({ walletClient, publicClient }, command);
  console.log(JSON.stringify(result, null, 2));
}

// A failure is printed without the endpoint's path or the wallet's key, as npm start prints its own.
if (import.meta.main)
  await main(process.argv.slice(2)).catch((error: unknown) =>
    process.exit(rpcCommandFailure("price-feed", error, process.env)),
  );
