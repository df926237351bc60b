// The one deployment path of our contracts — `npm start` (Hardhat's in-process chain), the tests, and anyone
// pointing the gateway at another chain (`node scripts/evm-deploy.ts`) — and the Hardhat artifacts it reads
// the creation bytecode from, so `npm run compile` (= `hardhat build`) must have run.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Address, getAddress, type Hex, type PublicClient, type WalletClient } from "viem";
import { SwitchyardError, type SwitchyardErrorOptions } from "../../core/index.ts";
import { translatingViemErrors } from "./errors.ts";

/** What TestUSD is deployed with unless told otherwise: USDC's EIP-712 domain name and version. */
export const testUsdDefaults = { name: "USD Coin", symbol: "TUSD", version: "2", decimals: 6 } as const;

export const contractNames = ["TestUSD", "RevenueSplitter", "ForwarderFactory"] as const;
export type ContractName = (typeof contractNames)[number];
export type ContractArtifact = { contractName: string; abi: readonly unknown[]; bytecode: Hex };

/** The artifacts are missing: `npm run compile` has not run in this checkout. */
export class ContractArtifactMissingError extends SwitchyardError {
  override name = "ContractArtifactMissingError";
  readonly file: string;
  constructor(file: string, options: { cause: unknown }) {
    super(`contract artifact ${file} is missing; run \`npm run compile\``, { cause: options.cause });
    this.file = file;
  }
}

/** Deploying a contract failed: the node refused the transaction, or it was mined without creating the contract. */
export class ContractDeploymentError extends SwitchyardError {
  override name = "ContractDeploymentError";
  readonly contract: ContractName;
  /** The deployment transaction, when one was sent. */
  readonly txHash: Hex | null;
  constructor(contract: ContractName, options: { txHash?: Hex; details?: string; cause?: unknown }) {
    super(`deploying ${contract} failed`, { details: options.details, cause: options.cause });
    this.contract = contract;
    this.txHash = options.txHash ?? null;
  }
}

/** Where Hardhat writes one of our contracts' artifact (ABI and creation bytecode). */
function contractArtifactPath(name: ContractName): string {
  return path.join(import.meta.dirname, "..", "..", "artifacts", "contracts", `${name}.sol`, `${name}.json`);
}

/** The Hardhat artifact (ABI and creation bytecode) of one of our contracts. */
export async function readContractArtifact(name: ContractName): Promise<ContractArtifact> {
  const file = contractArtifactPath(name);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    throw new ContractArtifactMissingError(file, { cause });
  }
  return JSON.parse(text) as ContractArtifact;
}

export type DeployContractsParams = {
  walletClient: WalletClient;
  publicClient: PublicClient;
  /** TestUSD's ERC-20 name (= EIP-712 domain name), symbol and EIP-712 version; USDC's by default. */
  testUsd?: { name: string; symbol: string; version: string };
};

export type DeployedContracts = {
  testUsd: Address;
  splitter: Address;
  /** Deposit addresses per invoice (CREATE2 forwarders), swept to the deploying account. */
  forwarderFactory: Address;
};

/**
 * Deploys TestUSD, RevenueSplitter and a ForwarderFactory owned by the wallet client's account (last, so the
 * first two keep their addresses) and waits for each receipt.
 * The one deployment path: `npm start` (Hardhat's in-process chain), the tests, and users on another chain.
 */
export async function deployContracts(params: DeployContractsParams): Promise<DeployedContracts> {
  const { walletClient, publicClient } = params;
  const token = params.testUsd ?? testUsdDefaults;
  const testUsd = await deployOne(walletClient, publicClient, "TestUSD", [
    token.name,
    token.symbol,
    token.version,
  ]);
  const splitter = await deployOne(walletClient, publicClient, "RevenueSplitter", []);
  const forwarderFactory = await deployForwarderFactory({ walletClient, publicClient });
  return { testUsd, splitter, forwarderFactory };
}

/** Deploys a ForwarderFactory whose sweeps go to (and may only be run by) the wallet client's account. */
export async function deployForwarderFactory(params: {
  walletClient: WalletClient;
  publicClient: PublicClient;
}): Promise<Address> {
  const owner = params.walletClient.account?.address;
  if (owner === undefined)
    throw new ContractDeploymentError("ForwarderFactory", { details: "the wallet client has no account" });
  return deployOne(params.walletClient, params.publicClient, "ForwarderFactory", [owner]);
}

/** Deploys only RevenueSplitter: for a chain where the stablecoin (USDC) already exists. */
export async function deployRevenueSplitter(params: {
  walletClient: WalletClient;
  publicClient: PublicClient;
}): Promise<Address> {
  return deployOne(params.walletClient, params.publicClient, "RevenueSplitter", []);
}

async function deployOne(
  walletClient: WalletClient,
  publicClient: PublicClient,
  name: ContractName,
  args: readonly unknown[],
): Promise<Address> {
  const artifact = await readContractArtifact(name);
  const account = walletClient.account;
  if (account === undefined)
    throw new ContractDeploymentError(name, { details: "the wallet client has no account" });
  // viem's errors (the node refused, or is out of reach) become this contract's deployment error.
  const failed = (txHash?: Hex) => (_shortMessage: string, options: SwitchyardErrorOptions) =>
    new ContractDeploymentError(name, { ...options, ...(txHash === undefined ? {} : { txHash }) });
  const hash = await translatingViemErrors(
    `deploying ${name}`,
    () =>
      walletClient.deployContract({
        abi: artifact.abi,
        bytecode: artifact.bytecode,
        args,
        account,
        chain: walletClient.chain ?? null,
      }),
    failed(),
  );
  const receipt = await translatingViemErrors(
    `deploying ${name}`,
    () => publicClient.waitForTransactionReceipt({ hash }),
    failed(hash),
  );
  if (receipt.status !== "success" || !receipt.contractAddress) {
    throw new ContractDeploymentError(name, {
      txHash: hash,
      details: `transaction ${hash}, status ${receipt.status}`,
    });
  }
  return getAddress(receipt.contractAddress);
}
