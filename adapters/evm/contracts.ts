// The contracts the EVM rail uses — TestUSD (USDC-like, local chains only) and RevenueSplitter — their ABIs
// as `const` literals (viem infers every argument and event type from them), the one deployment path used
// by `npm start`, the tests and anyone pointing the gateway at another chain, and the pure helpers that
// must agree with the contracts bit for bit (split ids, authorization nonces, typed data, references).
//
// The ABIs below are generated from the Hardhat artifacts (test/contracts/write-abis.ts); the bytecode is
// read from the artifacts at deployment time, so `npm run compile` (= `hardhat build`) must have run.
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Address,
  encodeAbiParameters,
  getAddress,
  type Hex,
  hexToString,
  keccak256,
  type PublicClient,
  stringToHex,
  type WalletClient,
} from "viem";
import type { SplitDefinition } from "../../core/index.ts";

/** Shares are in basis points and sum to this. */
export const basisPointsTotal = 10_000;
/** RevenueSplitter.RECIPIENTS_MAX: the gas reason is written in contracts/RevenueSplitter.sol. */
export const splitRecipientsMax = 300;
/** RevenueSplitter.SETTLE_BATCH_PAYEES_MAX. */
export const settleBatchPayeesMax = 500;
/** What TestUSD is deployed with unless told otherwise: USDC's EIP-712 domain name and version. */
export const testUsdDefaults = { name: "USD Coin", symbol: "TUSD", version: "2", decimals: 6 } as const;

export const contractNames = ["TestUSD", "RevenueSplitter"] as const;
export type ContractName = (typeof contractNames)[number];
export type ContractArtifact = { contractName: string; abi: readonly unknown[]; bytecode: Hex };

/** The artifacts are missing: `npm run compile` has not run in this checkout. */
export class ContractArtifactMissingError extends Error {
  override readonly name = "ContractArtifactMissingError";
  readonly file: string;
  constructor(file: string, options: { cause: unknown }) {
    super(`contract artifact ${file} is missing; run \`npm run compile\``, options);
    this.file = file;
  }
}

/** A deployment transaction was mined without creating the contract. */
export class ContractDeploymentError extends Error {
  override readonly name = "ContractDeploymentError";
  readonly contract: ContractName;
  readonly txHash: Hex;
  constructor(contract: ContractName, txHash: Hex, status: string) {
    super(`deploying ${contract} failed (transaction ${txHash}, status ${status})`);
    this.contract = contract;
    this.txHash = txHash;
  }
}

/** The Hardhat artifact (ABI and creation bytecode) of one of our contracts. */
export async function readContractArtifact(name: ContractName): Promise<ContractArtifact> {
  const file = path.join(
    import.meta.dirname,
    "..",
    "..",
    "artifacts",
    "contracts",
    `${name}.sol`,
    `${name}.json`,
  );
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

export type DeployedContracts = { testUsd: Address; splitter: Address };

/**
 * Deploys TestUSD and RevenueSplitter from the wallet client's account and waits for both receipts.
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
  return { testUsd, splitter };
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
  if (account === undefined) throw new TypeError("deployContracts: the wallet client has no account");
  const hash = await walletClient.deployContract({
    abi: artifact.abi,
    bytecode: artifact.bytecode,
    args,
    account,
    chain: walletClient.chain ?? null,
  });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success" || !receipt.contractAddress) {
    throw new ContractDeploymentError(name, hash, receipt.status);
  }
  return getAddress(receipt.contractAddress);
}

/** A split as the contract wants it (defined in core/, where the watcher's events carry it). */
export type { SplitDefinition };

/** The split's id, exactly as RevenueSplitter.splitIdOf: keccak256(abi.encode(address[], uint16[])). */
export function splitIdOf(recipients: readonly Address[], basisPoints: readonly number[]): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address[]" }, { type: "uint16[]" }],
      [recipients as Address[], basisPoints as number[]],
    ),
  );
}

/** Orders a split's recipients ascending (as the contract requires), keeping each share with its recipient. */
export function canonicalSplit(split: SplitDefinition): SplitDefinition {
  if (split.recipients.length !== split.basisPoints.length) {
    throw new RangeError("canonicalSplit: recipients and basisPoints differ in length");
  }
  const pairs = split.recipients.map((recipient, i) => ({ recipient, bps: split.basisPoints[i]! }));
  pairs.sort((a, b) => {
    const x = BigInt(a.recipient);
    const y = BigInt(b.recipient);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return { recipients: pairs.map((p) => p.recipient), basisPoints: pairs.map((p) => p.bps) };
}

/** BatchSettled's batchHash, as RevenueSplitter.batchHashOf: keccak256(abi.encode(address[], uint256[])). */
export function batchHashOf(payees: readonly Address[], amounts: readonly bigint[]): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address[]" }, { type: "uint256[]" }],
      [payees as Address[], amounts as bigint[]],
    ),
  );
}

/** The EIP-3009 nonce for payWithAuthorization, as RevenueSplitter.authorizationNonceOf. */
export function authorizationNonceOf(splitId: Hex, ref: Hex): Hex {
  return keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "bytes32" }], [splitId, ref]));
}

/** Longest text that fits a bytes32 reference. */
export const referenceTextBytesMax = 32;

/** A bytes32 reference holding a gateway id (UTF-8, right-padded with zeros); reversible. */
export function referenceFromId(id: string): Hex {
  if (Buffer.byteLength(id, "utf8") > referenceTextBytesMax) {
    throw new RangeError(`referenceFromId: "${id}" is longer than ${referenceTextBytesMax} bytes`);
  }
  return stringToHex(id, { size: 32 });
}

/** The id a reference made by referenceFromId holds. */
export function idFromReference(ref: Hex): string {
  return hexToString(ref, { size: 32 });
}

/** The EIP-712 domain of a TestUSD (or USDC) deployment. */
export type TokenDomain = { name: string; version: string; chainId: number; verifyingContract: Address };

export type AuthorizationMessage = {
  from: Address;
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
};

const authorizationFields = [
  { name: "from", type: "address" },
  { name: "to", type: "address" },
  { name: "value", type: "uint256" },
  { name: "validAfter", type: "uint256" },
  { name: "validBefore", type: "uint256" },
  { name: "nonce", type: "bytes32" },
] as const;

/** EIP-3009 typed data for `receiveWithAuthorization` (what payWithAuthorization needs): pass to signTypedData. */
export function receiveWithAuthorizationTypedData(domain: TokenDomain, message: AuthorizationMessage) {
  return {
    domain,
    types: { ReceiveWithAuthorization: authorizationFields },
    primaryType: "ReceiveWithAuthorization",
    message,
  } as const;
}

/** EIP-3009 typed data for `transferWithAuthorization` (x402 `exact`): pass to signTypedData. */
export function transferWithAuthorizationTypedData(domain: TokenDomain, message: AuthorizationMessage) {
  return {
    domain,
    types: { TransferWithAuthorization: authorizationFields },
    primaryType: "TransferWithAuthorization",
    message,
  } as const;
}

/** EIP-3009 typed data for `cancelAuthorization`. */
export function cancelAuthorizationTypedData(
  domain: TokenDomain,
  message: { authorizer: Address; nonce: Hex },
) {
  return {
    domain,
    types: {
      CancelAuthorization: [
        { name: "authorizer", type: "address" },
        { name: "nonce", type: "bytes32" },
      ],
    },
    primaryType: "CancelAuthorization",
    message,
  } as const;
}

/** EIP-2612 typed data for `permit`. */
export function permitTypedData(
  domain: TokenDomain,
  message: { owner: Address; spender: Address; value: bigint; nonce: bigint; deadline: bigint },
) {
  return {
    domain,
    types: {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    primaryType: "Permit",
    message,
  } as const;
}

/**
 * `node adapters/evm/contracts.ts deploy [--with-test-usd]`: the same deployment path against any chain,
 * from EVM_RPC_URL with the key in EVM_HOT_WALLET_KEY (the gateway's own settings). Prints the addresses.
 */
async function deployFromCommandLine(argv: readonly string[]): Promise<void> {
  const [command, ...flags] = argv;
  const url = process.env.EVM_RPC_URL;
  const key = process.env.EVM_HOT_WALLET_KEY;
  if (command !== "deploy" || flags.some((flag) => flag !== "--with-test-usd") || !url || !key) {
    console.error(
      "usage: EVM_RPC_URL=… EVM_HOT_WALLET_KEY=0x… node adapters/evm/contracts.ts deploy [--with-test-usd]",
    );
    process.exitCode = 2;
    return;
  }
  const { createPublicClient, createWalletClient, http } = await import("viem");
  const { privateKeyToAccount } = await import("viem/accounts");
  const transport = http(url, { timeout: commandLineRpcTimeoutMs });
  const publicClient = createPublicClient({ transport });
  const walletClient = createWalletClient({ transport, account: privateKeyToAccount(key as Hex) });
  const chainId = await publicClient.getChainId();
  const deployed = flags.includes("--with-test-usd")
    ? await deployContracts({ walletClient, publicClient })
    : { splitter: await deployRevenueSplitter({ walletClient, publicClient }) };
  console.log(JSON.stringify({ chainId, ...deployed }, null, 2));
}

const commandLineRpcTimeoutMs = 30_000;

// <generated-abis> (node test/contracts/write-abis.ts)
export const testUsdAbi = [
  {
    inputs: [
      { internalType: "string", name: "name_", type: "string" },
      { internalType: "string", name: "symbol_", type: "string" },
      { internalType: "string", name: "version_", type: "string" },
    ],
    stateMutability: "nonpayable",
    type: "constructor",
  },
  { inputs: [], name: "ECDSAInvalidSignature", type: "error" },
  {
    inputs: [{ internalType: "uint256", name: "length", type: "uint256" }],
    name: "ECDSAInvalidSignatureLength",
    type: "error",
  },
  {
    inputs: [{ internalType: "bytes32", name: "s", type: "bytes32" }],
    name: "ECDSAInvalidSignatureS",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "spender", type: "address" },
      { internalType: "uint256", name: "allowance", type: "uint256" },
      { internalType: "uint256", name: "needed", type: "uint256" },
    ],
    name: "ERC20InsufficientAllowance",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "sender", type: "address" },
      { internalType: "uint256", name: "balance", type: "uint256" },
      { internalType: "uint256", name: "needed", type: "uint256" },
    ],
    name: "ERC20InsufficientBalance",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "approver", type: "address" }],
    name: "ERC20InvalidApprover",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "receiver", type: "address" }],
    name: "ERC20InvalidReceiver",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "sender", type: "address" }],
    name: "ERC20InvalidSender",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "spender", type: "address" }],
    name: "ERC20InvalidSpender",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "validAfter", type: "uint256" },
      { internalType: "uint256", name: "validBefore", type: "uint256" },
    ],
    name: "ERC3009InvalidAuthorizationTime",
    type: "error",
  },
  { inputs: [], name: "ERC3009InvalidSignature", type: "error" },
  {
    inputs: [
      { internalType: "address", name: "authorizer", type: "address" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
    ],
    name: "ERC3009UsedAuthorization",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "account", type: "address" },
      { internalType: "uint256", name: "currentNonce", type: "uint256" },
    ],
    name: "InvalidAccountNonce",
    type: "error",
  },
  { inputs: [], name: "InvalidShortString", type: "error" },
  {
    inputs: [
      { internalType: "uint8", name: "bits", type: "uint8" },
      { internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "SafeCastOverflowedUintDowncast",
    type: "error",
  },
  { inputs: [{ internalType: "string", name: "str", type: "string" }], name: "StringTooLong", type: "error" },
  {
    inputs: [
      { internalType: "uint256", name: "deadline", type: "uint256" },
      { internalType: "uint256", name: "timestamp", type: "uint256" },
    ],
    name: "TestUSDExpiredPermit",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "signer", type: "address" },
      { internalType: "address", name: "owner", type: "address" },
    ],
    name: "TestUSDInvalidPermitSigner",
    type: "error",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "address", name: "owner", type: "address" },
      { indexed: true, internalType: "address", name: "spender", type: "address" },
      { indexed: false, internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "Approval",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "address", name: "authorizer", type: "address" },
      { indexed: true, internalType: "bytes32", name: "nonce", type: "bytes32" },
    ],
    name: "AuthorizationCanceled",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "address", name: "authorizer", type: "address" },
      { indexed: true, internalType: "bytes32", name: "nonce", type: "bytes32" },
    ],
    name: "AuthorizationUsed",
    type: "event",
  },
  { anonymous: false, inputs: [], name: "EIP712DomainChanged", type: "event" },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "address", name: "from", type: "address" },
      { indexed: true, internalType: "address", name: "to", type: "address" },
      { indexed: false, internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "Transfer",
    type: "event",
  },
  {
    inputs: [],
    name: "DOMAIN_SEPARATOR",
    outputs: [{ internalType: "bytes32", name: "", type: "bytes32" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "owner", type: "address" },
      { internalType: "address", name: "spender", type: "address" },
    ],
    name: "allowance",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "spender", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "approve",
    outputs: [{ internalType: "bool", name: "", type: "bool" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "authorizer", type: "address" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
    ],
    name: "authorizationState",
    outputs: [{ internalType: "bool", name: "", type: "bool" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [{ internalType: "address", name: "account", type: "address" }],
    name: "balanceOf",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "authorizer", type: "address" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
      { internalType: "uint8", name: "v", type: "uint8" },
      { internalType: "bytes32", name: "r", type: "bytes32" },
      { internalType: "bytes32", name: "s", type: "bytes32" },
    ],
    name: "cancelAuthorization",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [],
    name: "decimals",
    outputs: [{ internalType: "uint8", name: "", type: "uint8" }],
    stateMutability: "pure",
    type: "function",
  },
  {
    inputs: [],
    name: "eip712Domain",
    outputs: [
      { internalType: "bytes1", name: "fields", type: "bytes1" },
      { internalType: "string", name: "name", type: "string" },
      { internalType: "string", name: "version", type: "string" },
      { internalType: "uint256", name: "chainId", type: "uint256" },
      { internalType: "address", name: "verifyingContract", type: "address" },
      { internalType: "bytes32", name: "salt", type: "bytes32" },
      { internalType: "uint256[]", name: "extensions", type: "uint256[]" },
    ],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "to", type: "address" },
      { internalType: "uint256", name: "amount", type: "uint256" },
    ],
    name: "mint",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [],
    name: "name",
    outputs: [{ internalType: "string", name: "", type: "string" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [{ internalType: "address", name: "owner", type: "address" }],
    name: "nonces",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "owner", type: "address" },
      { internalType: "address", name: "spender", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
      { internalType: "uint256", name: "deadline", type: "uint256" },
      { internalType: "uint8", name: "v", type: "uint8" },
      { internalType: "bytes32", name: "r", type: "bytes32" },
      { internalType: "bytes32", name: "s", type: "bytes32" },
    ],
    name: "permit",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "from", type: "address" },
      { internalType: "address", name: "to", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
      { internalType: "uint256", name: "validAfter", type: "uint256" },
      { internalType: "uint256", name: "validBefore", type: "uint256" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
      { internalType: "uint8", name: "v", type: "uint8" },
      { internalType: "bytes32", name: "r", type: "bytes32" },
      { internalType: "bytes32", name: "s", type: "bytes32" },
    ],
    name: "receiveWithAuthorization",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [],
    name: "symbol",
    outputs: [{ internalType: "string", name: "", type: "string" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "totalSupply",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "to", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "transfer",
    outputs: [{ internalType: "bool", name: "", type: "bool" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "from", type: "address" },
      { internalType: "address", name: "to", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "transferFrom",
    outputs: [{ internalType: "bool", name: "", type: "bool" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "from", type: "address" },
      { internalType: "address", name: "to", type: "address" },
      { internalType: "uint256", name: "value", type: "uint256" },
      { internalType: "uint256", name: "validAfter", type: "uint256" },
      { internalType: "uint256", name: "validBefore", type: "uint256" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
      { internalType: "uint8", name: "v", type: "uint8" },
      { internalType: "bytes32", name: "r", type: "bytes32" },
      { internalType: "bytes32", name: "s", type: "bytes32" },
    ],
    name: "transferWithAuthorization",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [],
    name: "version",
    outputs: [{ internalType: "string", name: "", type: "string" }],
    stateMutability: "view",
    type: "function",
  },
] as const;
export const revenueSplitterAbi = [
  { inputs: [], name: "ReentrancyGuardReentrantCall", type: "error" },
  {
    inputs: [
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "expected", type: "uint256" },
      { internalType: "uint256", name: "received", type: "uint256" },
    ],
    name: "RevenueSplitterAmountNotReceived",
    type: "error",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "index", type: "uint256" },
      { internalType: "uint256", name: "max", type: "uint256" },
    ],
    name: "RevenueSplitterBalanceOverflow",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "sum", type: "uint256" },
      { internalType: "uint256", name: "expected", type: "uint256" },
    ],
    name: "RevenueSplitterBasisPointsSum",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "payer", type: "address" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "RevenueSplitterBatchAlreadySettled",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "count", type: "uint256" },
      { internalType: "uint256", name: "max", type: "uint256" },
    ],
    name: "RevenueSplitterBatchTooLarge",
    type: "error",
  },
  {
    inputs: [{ internalType: "uint256", name: "index", type: "uint256" }],
    name: "RevenueSplitterDirtyAddress",
    type: "error",
  },
  { inputs: [], name: "RevenueSplitterEmptyBatch", type: "error" },
  {
    inputs: [
      { internalType: "uint256", name: "index", type: "uint256" },
      { internalType: "uint256", name: "count", type: "uint256" },
    ],
    name: "RevenueSplitterIndexOutOfRange",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "addresses", type: "uint256" },
      { internalType: "uint256", name: "values", type: "uint256" },
    ],
    name: "RevenueSplitterLengthMismatch",
    type: "error",
  },
  { inputs: [], name: "RevenueSplitterNoRecipients", type: "error" },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
    ],
    name: "RevenueSplitterNothingToDistribute",
    type: "error",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "index", type: "uint256" },
    ],
    name: "RevenueSplitterNothingToWithdraw",
    type: "error",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "received", type: "uint256" },
      { internalType: "uint256", name: "max", type: "uint256" },
    ],
    name: "RevenueSplitterReceivedOverflow",
    type: "error",
  },
  {
    inputs: [{ internalType: "uint256", name: "index", type: "uint256" }],
    name: "RevenueSplitterRecipientsNotAscending",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "count", type: "uint256" },
      { internalType: "uint256", name: "max", type: "uint256" },
    ],
    name: "RevenueSplitterTooManyRecipients",
    type: "error",
  },
  {
    inputs: [{ internalType: "bytes32", name: "splitId", type: "bytes32" }],
    name: "RevenueSplitterUnknownSplit",
    type: "error",
  },
  { inputs: [], name: "RevenueSplitterZeroAmount", type: "error" },
  {
    inputs: [{ internalType: "uint256", name: "index", type: "uint256" }],
    name: "RevenueSplitterZeroBasisPoints",
    type: "error",
  },
  {
    inputs: [{ internalType: "uint256", name: "index", type: "uint256" }],
    name: "RevenueSplitterZeroPayee",
    type: "error",
  },
  {
    inputs: [{ internalType: "uint256", name: "index", type: "uint256" }],
    name: "RevenueSplitterZeroPayout",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "token", type: "address" }],
    name: "SafeERC20FailedOperation",
    type: "error",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "address", name: "token", type: "address" },
      { indexed: true, internalType: "address", name: "payer", type: "address" },
      { indexed: true, internalType: "bytes32", name: "ref", type: "bytes32" },
      { indexed: false, internalType: "uint256", name: "payeeCount", type: "uint256" },
      { indexed: false, internalType: "uint256", name: "total", type: "uint256" },
      { indexed: false, internalType: "bytes32", name: "batchHash", type: "bytes32" },
    ],
    name: "BatchSettled",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "bytes32", name: "splitId", type: "bytes32" },
      { indexed: true, internalType: "address", name: "token", type: "address" },
      { indexed: true, internalType: "address", name: "distributor", type: "address" },
      { indexed: false, internalType: "uint256", name: "amount", type: "uint256" },
      { indexed: false, internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "Distributed",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "bytes32", name: "splitId", type: "bytes32" },
      { indexed: true, internalType: "address", name: "token", type: "address" },
      { indexed: true, internalType: "address", name: "payer", type: "address" },
      { indexed: false, internalType: "uint256", name: "amount", type: "uint256" },
      { indexed: false, internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "Paid",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "bytes32", name: "splitId", type: "bytes32" },
      { indexed: false, internalType: "address[]", name: "recipients", type: "address[]" },
      { indexed: false, internalType: "uint16[]", name: "basisPoints", type: "uint16[]" },
    ],
    name: "SplitCreated",
    type: "event",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "bytes32", name: "splitId", type: "bytes32" },
      { indexed: true, internalType: "address", name: "token", type: "address" },
      { indexed: true, internalType: "address", name: "recipient", type: "address" },
      { indexed: false, internalType: "uint256", name: "index", type: "uint256" },
      { indexed: false, internalType: "uint256", name: "amount", type: "uint256" },
    ],
    name: "Withdrawn",
    type: "event",
  },
  {
    inputs: [],
    name: "BALANCE_MAX",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "BASIS_POINTS_TOTAL",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "RECEIVED_MAX",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "RECIPIENTS_MAX",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "SETTLE_BATCH_PAYEES_MAX",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "authorizationNonceOf",
    outputs: [{ internalType: "bytes32", name: "", type: "bytes32" }],
    stateMutability: "pure",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "index", type: "uint256" },
    ],
    name: "balanceOf",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [{ internalType: "bytes32", name: "splitId", type: "bytes32" }],
    name: "basisPointsOf",
    outputs: [{ internalType: "uint16[]", name: "basisPoints", type: "uint16[]" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address[]", name: "payees", type: "address[]" },
      { internalType: "uint256[]", name: "amounts", type: "uint256[]" },
    ],
    name: "batchHashOf",
    outputs: [{ internalType: "bytes32", name: "", type: "bytes32" }],
    stateMutability: "pure",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "payer", type: "address" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "batchSettled",
    outputs: [{ internalType: "bool", name: "", type: "bool" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address[]", name: "recipients", type: "address[]" },
      { internalType: "uint16[]", name: "basisPoints", type: "uint16[]" },
    ],
    name: "createSplit",
    outputs: [{ internalType: "bytes32", name: "splitId", type: "bytes32" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "distribute",
    outputs: [{ internalType: "uint256", name: "amount", type: "uint256" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "uint256", name: "amount", type: "uint256" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "pay",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
      { internalType: "address", name: "from", type: "address" },
      { internalType: "uint256", name: "amount", type: "uint256" },
      { internalType: "uint256", name: "validAfter", type: "uint256" },
      { internalType: "uint256", name: "validBefore", type: "uint256" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
      { internalType: "uint8", name: "v", type: "uint8" },
      { internalType: "bytes32", name: "r", type: "bytes32" },
      { internalType: "bytes32", name: "s", type: "bytes32" },
    ],
    name: "payWithAuthorization",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [{ internalType: "bytes32", name: "splitId", type: "bytes32" }],
    name: "recipientCountOf",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "token", type: "address" },
      { internalType: "address[]", name: "payees", type: "address[]" },
      { internalType: "uint256[]", name: "amounts", type: "uint256[]" },
      { internalType: "bytes32", name: "ref", type: "bytes32" },
    ],
    name: "settleBatch",
    outputs: [{ internalType: "uint256", name: "total", type: "uint256" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address[]", name: "recipients", type: "address[]" },
      { internalType: "uint16[]", name: "basisPoints", type: "uint16[]" },
    ],
    name: "splitIdOf",
    outputs: [{ internalType: "bytes32", name: "", type: "bytes32" }],
    stateMutability: "pure",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
    ],
    name: "totalsOf",
    outputs: [
      { internalType: "uint256", name: "received", type: "uint256" },
      { internalType: "uint256", name: "distributed", type: "uint256" },
    ],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "bytes32", name: "splitId", type: "bytes32" },
      { internalType: "address", name: "token", type: "address" },
    ],
    name: "undistributedOf",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "token", type: "address" },
      { internalType: "address[]", name: "recipients", type: "address[]" },
      { internalType: "uint16[]", name: "basisPoints", type: "uint16[]" },
      { internalType: "uint256", name: "index", type: "uint256" },
    ],
    name: "withdraw",
    outputs: [{ internalType: "uint256", name: "amount", type: "uint256" }],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    inputs: [
      { internalType: "address", name: "token", type: "address" },
      { internalType: "address[]", name: "recipients", type: "address[]" },
      { internalType: "uint16[]", name: "basisPoints", type: "uint16[]" },
    ],
    name: "withdrawAll",
    outputs: [{ internalType: "uint256", name: "total", type: "uint256" }],
    stateMutability: "nonpayable",
    type: "function",
  },
] as const;
/** TestUSD's (ERC-20, ERC-3009, permit) errors: add to the splitter's ABI to decode a token revert. */
export const testUsdErrorsAbi = [
  { inputs: [], name: "ECDSAInvalidSignature", type: "error" },
  {
    inputs: [{ internalType: "uint256", name: "length", type: "uint256" }],
    name: "ECDSAInvalidSignatureLength",
    type: "error",
  },
  {
    inputs: [{ internalType: "bytes32", name: "s", type: "bytes32" }],
    name: "ECDSAInvalidSignatureS",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "spender", type: "address" },
      { internalType: "uint256", name: "allowance", type: "uint256" },
      { internalType: "uint256", name: "needed", type: "uint256" },
    ],
    name: "ERC20InsufficientAllowance",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "sender", type: "address" },
      { internalType: "uint256", name: "balance", type: "uint256" },
      { internalType: "uint256", name: "needed", type: "uint256" },
    ],
    name: "ERC20InsufficientBalance",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "approver", type: "address" }],
    name: "ERC20InvalidApprover",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "receiver", type: "address" }],
    name: "ERC20InvalidReceiver",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "sender", type: "address" }],
    name: "ERC20InvalidSender",
    type: "error",
  },
  {
    inputs: [{ internalType: "address", name: "spender", type: "address" }],
    name: "ERC20InvalidSpender",
    type: "error",
  },
  {
    inputs: [
      { internalType: "uint256", name: "validAfter", type: "uint256" },
      { internalType: "uint256", name: "validBefore", type: "uint256" },
    ],
    name: "ERC3009InvalidAuthorizationTime",
    type: "error",
  },
  { inputs: [], name: "ERC3009InvalidSignature", type: "error" },
  {
    inputs: [
      { internalType: "address", name: "authorizer", type: "address" },
      { internalType: "bytes32", name: "nonce", type: "bytes32" },
    ],
    name: "ERC3009UsedAuthorization",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "account", type: "address" },
      { internalType: "uint256", name: "currentNonce", type: "uint256" },
    ],
    name: "InvalidAccountNonce",
    type: "error",
  },
  { inputs: [], name: "InvalidShortString", type: "error" },
  {
    inputs: [
      { internalType: "uint8", name: "bits", type: "uint8" },
      { internalType: "uint256", name: "value", type: "uint256" },
    ],
    name: "SafeCastOverflowedUintDowncast",
    type: "error",
  },
  { inputs: [{ internalType: "string", name: "str", type: "string" }], name: "StringTooLong", type: "error" },
  {
    inputs: [
      { internalType: "uint256", name: "deadline", type: "uint256" },
      { internalType: "uint256", name: "timestamp", type: "uint256" },
    ],
    name: "TestUSDExpiredPermit",
    type: "error",
  },
  {
    inputs: [
      { internalType: "address", name: "signer", type: "address" },
      { internalType: "address", name: "owner", type: "address" },
    ],
    name: "TestUSDInvalidPermitSigner",
    type: "error",
  },
] as const;
// </generated-abis>

if (import.meta.main) await deployFromCommandLine(process.argv.slice(2));
