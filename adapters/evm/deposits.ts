// Money in on the EVM rail (the Rail contract's `receive`): every invoice gets both ways to be paid in the token.
// - A deposit address: the CREATE2 address of a ForwarderFactory forwarder whose salt is derived from the invoice
//   id (nothing is deployed until a sweep); a plain `transfer` to it pays. The deposit watcher (deposit-source.ts)
//   credits it after the confirmations; sweeps (sweeps.ts) move forwarders' balances to the hot wallet in batches.
// - An EIP-3009 authorization the payer signs (gasless for the payer): ReceiveWithAuthorization to the hot wallet
//   for exactly the amount, valid until the invoice expires, with a nonce derived from the invoice id; the gateway
//   checks and submits it (authorizations.ts), and the watcher credits its AuthorizationUsed log once final.
// Asked again with the same reference, `receive` offers the same thing: the offer is stored before it is made.
import { randomBytes } from "node:crypto";
import {
  type Address,
  concatHex,
  encodeAbiParameters,
  getContractAddress,
  type Hex,
  keccak256,
  stringToHex,
} from "viem";
import type { ReceiveOutcome, ReceiveRequest } from "../../core/index.ts";
import { forwarderFactoryAbi, testUsdAbi } from "./abi.generated.ts";
import { EvmRailError, viemDetails } from "./errors.ts";
import type { EvmRailState } from "./rail-state.ts";
import { receiveWithAuthorizationTypedData, type TokenDomain } from "./typed-data.ts";

/** What the rail needs to take money in. */
export type DepositParams = {
  /** The ForwarderFactory owned by the hot wallet: a deposit address per invoice. Absent: authorizations only. */
  factory?: Address;
  /** First block the deposit watcher reads when it has no cursor yet; absent: the head when the rail first starts. */
  startBlock?: bigint;
  pollIntervalMs: number;
  /** How long after an invoice's expiry its address is still watched: a late payment in that time is credited. */
  lateWatchMs: number;
  /** The most forwarders one sweep transaction takes (the factory's own maximum is 200). */
  sweepSaltsMax: number;
  /** How long the lease on following deposits lasts (default 10 s). */
  leaseMs?: number;
  /** A deposit whose crediting fails this many times in a row is held, the others go on (watcher-state.ts). */
  sinkAttemptsMax?: number;
  /** How often held deposits are tried again (watcher-state.ts heldRetryMsDefault). */
  heldRetryMs?: number;
  /**
   * Past this many invoices watched, each range is read whole and its recipients looked up, rather than the node's
   * search filtered by every watched address (default: deposit-source.ts depositFilterWatchedMax).
   */
  filterWatchedMax?: number;
};

/** What the rail keeps for money in, beside its other state. */
export type DepositState = {
  readonly params: DepositParams;
  /** The factory's Forwarder implementation (read once), from which every deposit address is derived. */
  implementation: Address | null;
  /** The token's EIP-712 domain (read once). */
  domain: TokenDomain | null;
};

/** The path of the wallet's route (no API key; the invoice's client secret in the body). */
export const authorizationPath = (railId: string) => `/pay/${railId}/authorizations`;

const clientSecretBytes = 24;

/** The salt of an invoice's forwarder: keccak256 of its id. */
export function depositSaltOf(reference: string): Hex {
  return keccak256(stringToHex(reference));
}

/** The EIP-3009 nonce of an invoice's authorization, bound to the hot wallet and the invoice id. */
export function authorizationNonceForInvoice(hotWallet: Address, reference: string): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "string" }, { type: "address" }, { type: "string" }],
      ["switchyard:invoice", hotWallet, reference],
    ),
  );
}

/** Where Clones.cloneDeterministic(implementation, salt) puts a forwarder (the EIP-1167 creation code). */
export function forwarderAddressOf(factory: Address, implementation: Address, salt: Hex): Address {
  const bytecode = concatHex([
    "0x3d602d80600a3d3981f3363d3d373d3d3d363d73",
    implementation,
    "0x5af43d82803e903d91602b57fd5bf3",
  ]);
  return getContractAddress({ opcode: "CREATE2", from: factory, salt, bytecode });
}

export async function implementationOf(state: EvmRailState, deposits: DepositState): Promise<Address | null> {
  const factory = deposits.params.factory;
  if (factory === undefined) return null;
  deposits.implementation ??= await state.params.publicClient.readContract({
    address: factory,
    abi: forwarderFactoryAbi,
    functionName: "implementation",
  });
  return deposits.implementation;
}

export async function tokenDomainOf(state: EvmRailState, deposits: DepositState): Promise<TokenDomain> {
  if (deposits.domain !== null) return deposits.domain;
  const { publicClient, token } = state.params;
  const [name, version] = await Promise.all([
    publicClient.readContract({ address: token.address, abi: testUsdAbi, functionName: "name" }),
    publicClient.readContract({ address: token.address, abi: testUsdAbi, functionName: "version" }),
  ]);
  deposits.domain = { name, version, chainId: state.chainId, verifyingContract: token.address };
  return deposits.domain;
}

export type DepositRow = {
  reference: string;
  amount: bigint;
  deposit_address: string | null;
  salt: Hex;
  auth_nonce: Hex;
  client_secret: string;
  expires_at: Date;
  auth_from: string | null;
  /** The bound authorization's `to`: the hot wallet when it was bound (evm migration 0023; null: the hot wallet now). */
  auth_to: string | null;
  auth_tx_hash: string | null;
};

const depositColumns =
  "reference, amount, deposit_address, salt, auth_nonce, client_secret, expires_at, auth_from, auth_to, auth_tx_hash";

export async function depositByReference(state: EvmRailState, reference: string): Promise<DepositRow | null> {
  const [row] = await state.params.db.query<DepositRow>(
    `SELECT ${depositColumns} FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND reference = $3`,
    [state.chainId, state.params.token.address.toLowerCase(), reference],
  );
  return row ?? null;
}

/** What `receive` makes a client secret. */
const clientSecretPattern = new RegExp(`^pay_secret_[0-9a-f]{${clientSecretBytes * 2}}$`);

/**
 * The deposit whose client secret this is; null for none. Text that cannot be one is not looked up: the wallet route
 * takes it from anyone, and PostgreSQL refuses a NUL in a text parameter (a 500 for `"client_secret": "a\u0000"`).
 */
export async function depositByClientSecret(state: EvmRailState, secret: string): Promise<DepositRow | null> {
  if (!clientSecretPattern.test(secret)) return null;
  const [row] = await state.params.db.query<DepositRow>(
    `SELECT ${depositColumns} FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND client_secret = $3`,
    [state.chainId, state.params.token.address.toLowerCase(), secret],
  );
  return row ?? null;
}

/** The Rail contract's `receive`: both ways to pay `amount` for `reference`, stored before they are offered. */
export async function receiveDeposit(
  state: EvmRailState,
  deposits: DepositState,
  request: ReceiveRequest,
): Promise<ReceiveOutcome> {
  let implementation: Address | null;
  let domain: TokenDomain;
  try {
    [implementation, domain] = await Promise.all([
      implementationOf(state, deposits),
      tokenDomainOf(state, deposits),
    ]);
  } catch (error) {
    state.logger.warn({ error: viemDetails(error) }, "reading the token or the forwarder factory failed");
    return { status: "refused", code: "rail_unavailable", message: "the chain cannot be read now" };
  }
  const salt = depositSaltOf(request.reference);
  const factory = deposits.params.factory;
  const address =
    factory === undefined || implementation === null
      ? null
      : forwarderAddressOf(factory, implementation, salt);
  const nowMs = state.nowMs();
  // Whole seconds: the authorization's validBefore is the invoice's expiry, and the chain counts in seconds.
  const expiresAtS = Math.floor(nowMs / 1000) + request.expirySeconds;
  await state.params.db.query(
    `INSERT INTO evm_deposits
       (chain_id, token, reference, amount, deposit_address, salt, auth_nonce, client_secret, expires_at, watch_until)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), to_timestamp($9) + make_interval(secs => $10))
     ON CONFLICT (chain_id, token, reference) DO NOTHING`,
    [
      state.chainId,
      state.params.token.address.toLowerCase(),
      request.reference,
      request.amount,
      address?.toLowerCase() ?? null,
      salt,
      authorizationNonceForInvoice(state.account.address, request.reference),
      `pay_secret_${randomBytes(clientSecretBytes).toString("hex")}`,
      expiresAtS,
      deposits.params.lateWatchMs / 1000,
    ],
  );
  const row = await depositByReference(state, request.reference);
  if (row === null) throw new EvmRailError(`deposit ${request.reference} was not written`);
  return offerOf(state, domain, row, address);
}

function offerOf(
  state: EvmRailState,
  domain: TokenDomain,
  row: DepositRow,
  address: Address | null,
): ReceiveOutcome {
  const validBefore = BigInt(Math.floor(row.expires_at.getTime() / 1000));
  const message = {
    to: state.account.address,
    value: row.amount,
    validAfter: 0n,
    validBefore,
    nonce: row.auth_nonce,
  };
  // What a wallet signs (from: the payer) with eth_signTypedData_v4: the typed data, numbers as decimal strings.
  const typed = receiveWithAuthorizationTypedData(domain, {
    from: "0x0000000000000000000000000000000000000000",
    ...message,
  });
  const { from: _from, ...unsigned } = typed.message;
  const typedData = JSON.stringify({ ...typed, message: unsigned }, (_key, value) =>
    typeof value === "bigint" ? value.toString() : value,
  );
  return {
    status: "offered",
    railReference: row.auth_nonce,
    expiresAtMs: row.expires_at.getTime(),
    instructions: {
      chain_id: String(state.chainId),
      token: state.params.token.address,
      amount_minor: row.amount.toString(),
      ...(address === null ? {} : { deposit_address: address }),
      authorization_to: message.to,
      authorization_value: message.value.toString(),
      authorization_valid_after: "0",
      authorization_valid_before: validBefore.toString(),
      authorization_nonce: message.nonce,
      authorization_typed_data: typedData,
      authorization_url: authorizationPath(state.id),
      client_secret: row.client_secret,
    },
  };
}
