// Deploying and updating PriceFeed contracts (contracts/PriceFeed.sol): the embedded development chain gets one
// feed per priced asset at start (ETH at $3,000 and BTC at $100,000, 8 decimals like Chainlink's USD feeds),
// and `npm run price-feed` moves one. The bytecode comes from the Hardhat artifact: `npm run compile` first.

import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Address,
  getAddress,
  type Hex,
  type PublicClient,
  parseEventLogs,
  type WalletClient,
} from "viem";
import { assetByCode } from "../../core/index.ts";
import { priceFeedAbi } from "./abi.ts";
import { priceToAnswer } from "./decimal.ts";
import { PriceFeedError } from "./errors.ts";

/** Chainlink's USD feeds answer with 8 decimals. */
export const priceFeedDecimalsDefault = 8;

export type PriceFeedSpec = {
  readonly assetCode: string;
  /** USD per whole unit, a plain decimal string ("3000", "3100.25"). */
  readonly usd: string;
  /** Default priceFeedDecimalsDefault (8). */
  readonly decimals?: number;
};

/** What the embedded development chain starts with. */
export const devPriceFeedSpecs: readonly PriceFeedSpec[] = [
  { assetCode: "ETH", usd: "3000" },
  { assetCode: "BTC", usd: "100000" },
];

export type PriceFeedClients = {
  /** Deploys and owns the feeds (its account), on its chain. */
  readonly walletClient: WalletClient;
  readonly publicClient: Pick<PublicClient, "waitForTransactionReceipt" | "readContract">;
};

type Artifact = { abi: readonly unknown[]; bytecode: Hex };

const artifactPath = path.join(
  import.meta.dirname,
  "..",
  "..",
  "artifacts",
  "contracts",
  "PriceFeed.sol",
  "PriceFeed.json",
);

/** PriceFeed's Hardhat artifact (full ABI with its constructor, creation bytecode). */
export async function readPriceFeedArtifact(): Promise<Artifact> {
  let text: string;
  try {
    text = await readFile(artifactPath, "utf8");
  } catch (cause) {
    throw new PriceFeedError(`contract artifact ${artifactPath} is missing; run \`npm run compile\``, {
      cause,
    });
  }
  return JSON.parse(text) as Artifact;
}

/** Deploys one PriceFeed ("ETH / USD") answering `spec.usd`, and waits for its receipt. */
export async function deployPriceFeed(clients: PriceFeedClients, spec: PriceFeedSpec): Promise<Address> {
  const { walletClient } = clients;
  const decimals = spec.decimals ?? priceFeedDecimalsDefault;
  if (assetByCode(spec.assetCode) === null) throw new PriceFeedError(`unknown asset ${spec.assetCode}`);
  const answer = priceToAnswer(spec.usd, decimals);
  if (answer === null)
    throw new PriceFeedError(
      `${spec.assetCode} at ${JSON.stringify(spec.usd)}: not a positive price with at most ${decimals} decimals`,
    );
  const account = walletClient.account;
  if (account === undefined)
    throw new PriceFeedError("deploying PriceFeed: the wallet client has no account");
  const artifact = await readPriceFeedArtifact();
  let hash: Hex;
  try {
    hash = await walletClient.deployContract({
      abi: artifact.abi,
      bytecode: artifact.bytecode,
      args: [decimals, `${spec.assetCode} / USD`, answer],
      account,
      chain: walletClient.chain ?? null,
    });
  } catch (cause) {
    throw new PriceFeedError(`deploying the ${spec.assetCode} PriceFeed failed`, { cause });
  }
  const receipt = await waitForSuccess(clients, hash, `deploying the ${spec.assetCode} PriceFeed`);
  if (!receipt.contractAddress)
    throw new PriceFeedError(`deploying the ${spec.assetCode} PriceFeed created no contract`, {
      txHash: hash,
    });
  return getAddress(receipt.contractAddress);
}

/** Deploys a feed per spec (default ETH $3,000 and BTC $100,000), one after another: asset code → address. */
export async function deployPriceFeeds(
  clients: PriceFeedClients,
  specs: readonly PriceFeedSpec[] = devPriceFeedSpecs,
): Promise<Record<string, Address>> {
  const addresses: Record<string, Address> = {};
  for (const spec of specs) addresses[spec.assetCode] = await deployPriceFeed(clients, spec);
  return addresses;
}

export type PriceFeedUpdate = { readonly roundId: bigint; readonly answer: bigint; readonly txHash: Hex };

/**
 * Posts a new answer to a PriceFeed the wallet client's account owns: `usd` is the price of one whole unit as a
 * plain decimal string, converted exactly at the feed's decimals (more decimals than the feed has: refused).
 */
export async function updatePriceFeed(
  clients: PriceFeedClients,
  params: { readonly feed: Address; readonly usd: string },
): Promise<PriceFeedUpdate> {
  const { walletClient, publicClient } = clients;
  const account = walletClient.account;
  if (account === undefined)
    throw new PriceFeedError("updating a PriceFeed: the wallet client has no account");
  let decimals: number;
  try {
    decimals = await publicClient.readContract({
      address: params.feed,
      abi: priceFeedAbi,
      functionName: "decimals",
    });
  } catch (cause) {
    throw new PriceFeedError(`reading the decimals of the PriceFeed at ${params.feed} failed`, { cause });
  }
  const answer = priceToAnswer(params.usd, decimals);
  if (answer === null)
    throw new PriceFeedError(
      `${JSON.stringify(params.usd)} is not a positive price with at most ${decimals} decimals (the feed's)`,
    );
  let hash: Hex;
  try {
    hash = await walletClient.writeContract({
      address: params.feed,
      abi: priceFeedAbi,
      functionName: "updateAnswer",
      args: [answer],
      account,
      chain: walletClient.chain ?? null,
    });
  } catch (cause) {
    throw new PriceFeedError(`updating the PriceFeed at ${params.feed} failed`, { cause });
  }
  const receipt = await waitForSuccess(clients, hash, `updating the PriceFeed at ${params.feed}`);
  const [updated] = parseEventLogs({ abi: priceFeedAbi, eventName: "AnswerUpdated", logs: receipt.logs });
  if (updated === undefined)
    throw new PriceFeedError(`updating the PriceFeed at ${params.feed}: no AnswerUpdated event`, {
      txHash: hash,
    });
  return { roundId: updated.args.roundId, answer: updated.args.current, txHash: hash };
}

async function waitForSuccess(clients: PriceFeedClients, hash: Hex, what: string) {
  let receipt: Awaited<ReturnType<PublicClient["waitForTransactionReceipt"]>>;
  try {
    receipt = await clients.publicClient.waitForTransactionReceipt({ hash });
  } catch (cause) {
    throw new PriceFeedError(`${what}: no receipt`, { cause, txHash: hash });
  }
  if (receipt.status !== "success")
    throw new PriceFeedError(`${what} reverted`, { txHash: hash, details: `transaction ${hash}` });
  return receipt;
}
