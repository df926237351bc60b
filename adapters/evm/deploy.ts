// How our contracts are deployed, from the Hardhat artifacts (so `npm run compile` = `hardhat build` must have
// run). Two paths with the same contracts and arguments: the Ignition module (ignition/modules/Switchyard.ts) —
// `npx hardhat ignition deploy`, `node scripts/evm-deploy.ts`, and `npm start` on a development chain given no
// addresses — and direct viem deployments for Hardhat's in-process chains (`npm start`'s embedded chain and the
// tests), which start with every process and must stay quick. An Ignition deployment folder is read back here.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Artifact as IgnitionArtifact } from "@nomicfoundation/ignition-core";
import {
  type Account,
  type Address,
  type Chain,
  getAddress,
  type Hex,
  hexToBigInt,
  hexToNumber,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
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

// ---- the Ignition module (ignition/modules/Switchyard.ts)

/** The module's id: the deployment folder names each contract `SwitchyardModule#<contract>`. */
export const ignitionModuleId = "SwitchyardModule";

const blockPollingIntervalMs = 100;

/** Deploying the Ignition module failed (validation, reconciliation with an earlier run, or execution). */
export class IgnitionDeploymentError extends SwitchyardError {
  override name = "IgnitionDeploymentError";
}

/** An Ignition deployment folder that cannot be read as one of this module's. */
export class IgnitionDeploymentFolderError extends SwitchyardError {
  override name = "IgnitionDeploymentFolderError";
}

export type DeployWithIgnitionParams = {
  /** The deploying account signs locally (a key); the node needs no unlocked account. */
  walletClient: WalletClient<Transport, Chain, Account>;
  publicClient: PublicClient;
  /** The ForwarderFactory's owner, whose sweeps it takes; default: the deploying account (the hot wallet). */
  owner?: Address;
  /** Ignition's folder (journal, deployed_addresses.json), as `hardhat ignition deploy` keeps; unset: in memory. */
  deploymentDir?: string;
};

/**
 * Deploys ignition/modules/Switchyard.ts through Ignition's own engine (the one `npx hardhat ignition deploy`
 * runs), signing with the wallet client's account. With a deployment folder, a second run of a complete
 * deployment sends nothing and answers the same addresses. Ignition is a development dependency: loaded here only.
 */
export async function deployWithIgnition(params: DeployWithIgnitionParams): Promise<DeployedContracts> {
  const { deploy, DeploymentResultType } = await import("@nomicfoundation/ignition-core");
  const { default: ignitionModule } = await import("../../ignition/modules/Switchyard.ts");
  const sender = params.walletClient.account.address;
  const result = await deploy({
    ignitionModule,
    provider: signingProvider(params.walletClient, params.publicClient),
    artifactResolver: {
      // A Hardhat 3 artifact is Ignition's Artifact; the module names only our contracts.
      loadArtifact: async (name) =>
        (await readContractArtifact(name as ContractName)) as unknown as IgnitionArtifact,
      getBuildInfo: async () => undefined,
    },
    deploymentParameters: { [ignitionModuleId]: { owner: params.owner ?? sender } },
    // A development chain mines at once: look for receipts often (Ignition's default is every second).
    config: { blockPollingInterval: blockPollingIntervalMs },
    accounts: [sender],
    defaultSender: sender,
    ...(params.deploymentDir === undefined ? {} : { deploymentDir: params.deploymentDir }),
  });
  if (result.type !== DeploymentResultType.SUCCESSFUL_DEPLOYMENT)
    throw new IgnitionDeploymentError(`deploying ${ignitionModuleId} failed (${result.type})`, {
      details: JSON.stringify(result, (_key, value) =>
        typeof value === "bigint" ? value.toString() : value,
      ),
    });
  // The result names each contract by its future's id, as deployed_addresses.json does.
  const address = (contract: ContractName) => {
    const deployed = result.contracts[`${ignitionModuleId}#${contract}`];
    if (deployed === undefined)
      throw new IgnitionDeploymentError(`${ignitionModuleId} returned no ${contract}`);
    return getAddress(deployed.address);
  };
  return {
    testUsd: address("TestUSD"),
    splitter: address("RevenueSplitter"),
    forwarderFactory: address("ForwarderFactory"),
  };
}

/**
 * An EIP-1193 provider for Ignition over the public client's transport, with the wallet client's account as the
 * only account: Ignition's eth_sendTransaction (nonce, gas and fees chosen by Ignition) is signed here.
 */
function signingProvider(
  walletClient: WalletClient<Transport, Chain, Account>,
  publicClient: PublicClient,
): { request(args: { method: string; params?: unknown[] }): Promise<unknown> } {
  const account = walletClient.account;
  return {
    async request({ method, params }) {
      if (method === "eth_accounts" || method === "eth_requestAccounts") return [account.address];
      if (method !== "eth_sendTransaction")
        return publicClient.request({ method, params } as Parameters<PublicClient["request"]>[0]);
      const [tx] = params as [Record<string, Hex | undefined>];
      const big = (value: Hex | undefined) => (value === undefined ? undefined : hexToBigInt(value));
      const fees =
        tx.gasPrice !== undefined
          ? { gasPrice: hexToBigInt(tx.gasPrice) }
          : { maxFeePerGas: big(tx.maxFeePerGas), maxPriorityFeePerGas: big(tx.maxPriorityFeePerGas) };
      return walletClient.sendTransaction({
        account,
        chain: walletClient.chain,
        ...(tx.to === undefined ? {} : { to: tx.to }),
        ...(tx.data === undefined ? {} : { data: tx.data }),
        value: big(tx.value) ?? 0n,
        ...(tx.gas === undefined ? {} : { gas: hexToBigInt(tx.gas) }),
        ...(tx.nonce === undefined ? {} : { nonce: hexToNumber(tx.nonce) }),
        ...fees,
      } as Parameters<typeof walletClient.sendTransaction>[0]);
    },
  };
}

/**
 * The addresses an Ignition deployment folder holds (deployed_addresses.json, written by `npx hardhat ignition
 * deploy` of this module) and the chain it was made on (its journal's first entry).
 */
export async function readIgnitionDeployment(
  deploymentDir: string,
): Promise<DeployedContracts & { chainId: number }> {
  const read = async (file: string) => {
    try {
      return await readFile(path.join(deploymentDir, file), "utf8");
    } catch (cause) {
      throw new IgnitionDeploymentFolderError(`${path.join(deploymentDir, file)} cannot be read`, { cause });
    }
  };
  const addresses = JSON.parse(await read("deployed_addresses.json")) as Record<string, string>;
  // The journal is JSON lines, opening with a blank one: its first entry initializes the deployment.
  const first = (await read("journal.jsonl")).split("\n").find((line) => line.trim() !== "") ?? "{}";
  const chainId = (JSON.parse(first) as { chainId?: unknown }).chainId;
  if (typeof chainId !== "number")
    throw new IgnitionDeploymentFolderError(`${deploymentDir}: its journal names no chain`);
  const address = (contract: ContractName) => {
    const value = addresses[`${ignitionModuleId}#${contract}`];
    if (value === undefined || !/^0x[0-9a-fA-F]{40}$/.test(value))
      throw new IgnitionDeploymentFolderError(
        `${deploymentDir} has no ${ignitionModuleId}#${contract}: not a deployment of ignition/modules/Switchyard.ts`,
      );
    return getAddress(value);
  };
  return {
    chainId,
    testUsd: address("TestUSD"),
    splitter: address("RevenueSplitter"),
    forwarderFactory: address("ForwarderFactory"),
  };
}
