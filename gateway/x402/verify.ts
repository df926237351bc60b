// Verification of an `exact` EVM payment (EIP-3009 TransferWithAuthorization), in the reference facilitator's
// order: version, scheme, network, the requirements are the gateway's (its token, its hot wallet as payTo, the
// token's real EIP-712 domain), the signature (an EOA's recovered; a contract wallet's asked through the chain,
// ERC-1271), recipient, validity window, value (v2: equal; v1: at least), the nonce unused in the gateway and on the
// chain, the payer's balance, and last the transfer simulated from the hot wallet. Each refusal is a code from
// refusals.ts; a chain that cannot be read is `unexpected_verify_error`, never a throw.
import { type Address, BaseError, getAddress, type Hex, isAddressEqual } from "viem";
import type { Db } from "../db/index.ts";
import { type ChainRegistry, eip3009Abi, nonceUsed, type X402Chain } from "./chains.ts";
import { domainSeparator, recoverAddress, transferDigest } from "./recover.ts";
import { type Refused, refusedWith } from "./refusals.ts";
import { exactScheme, maxTimeoutSecondsDefault } from "./requirements.ts";
import {
  type ExactEvmPayload,
  exactEvmPayload,
  type PaymentPayload,
  paymentPayload,
  paymentRequirementsV1,
  paymentRequirementsV2,
} from "./schemas.ts";
import { isClaimed } from "./store.ts";

/** An authorization must stay valid at least this long after it is checked (the x402 reference's margin). */
export const validBeforeMarginS = 6n;

/**
 * How far past the requirements' maxTimeoutSeconds an authorization's validBefore may lie: x402's clients sign
 * validBefore = their now + maxTimeoutSeconds, and their clock may run ahead of ours. Ten minutes, the skew x402's
 * reference clients allow the other way (validAfter = their now - 600): at a minute, a payer whose clock ran two
 * minutes fast was refused though the reference facilitator takes it.
 */
export const validBeforeSkewS = 600n;

/**
 * The longest an authorization may stay valid, whatever maxTimeoutSeconds a seller's requirements name: its invoice is
 * made for at most a day (settle.ts) and its deposit watched a month past that, and an authorization left unused by a
 * reverted transaction of ours stays open, its payer's balance held, until its validBefore (spends.ts unspentByOurs).
 * One mined after the watch ended would move the payer's money to the hot wallet with no one to book it.
 */
export const validForMaxS = 86_400n;

/** What verification needs. */
export type VerifyDeps = { readonly db: Db; readonly chains: ChainRegistry; readonly nowMs: () => number };

export type Eip3009Authorization = {
  from: Address;
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
};

/**
 * The authorization of an exact EVM payload: its addresses checksummed, its value and window as bigints, its nonce in
 * lower case (as the rows keep it). Verification and the paywall's owed requests read it alike.
 */
export function authorizationOf(a: ExactEvmPayload["authorization"]): Eip3009Authorization {
  return {
    from: getAddress(a.from),
    to: getAddress(a.to),
    value: BigInt(a.value),
    validAfter: BigInt(a.validAfter),
    validBefore: BigInt(a.validBefore),
    nonce: a.nonce.toLowerCase() as Hex,
  };
}

/**
 * A payer's balance read from the chain: `amount`, in a state no earlier than block `atBlock`'s. A transfer mined in
 * `atBlock` or after may not show in it; one mined before does.
 */
export type BalanceReading = { readonly amount: bigint; readonly atBlock: bigint };

/**
 * The chain would take the transfer now. `balance`: the payer's balance in the state it was simulated against (the
 * paywall weighs it against what the payer's other payments hold, claims-batch.ts), null when that simulation did
 * not read it. `atBlock`: the block asked as it was simulated (simulate-batch.ts), the state then that block's or a
 * later one's, so the nonce was unused at it, null when none was asked; kept apart from the balance, which may not be
 * read where the block is (the payer's x402_unsent_owed row keeps it: scheme.ts).
 */
export type Taken = {
  readonly ok: true;
  readonly balance: BalanceReading | null;
  readonly atBlock: bigint | null;
};

/** The requirements, as the gateway reads them (v2's `amount`, v1's `maxAmountRequired`). */
export type ExactRequirements = {
  readonly version: 1 | 2;
  readonly chain: X402Chain;
  /** As the requirements name it: `eip155:<id>` (v2) or a v1 name. */
  readonly network: string;
  readonly amount: bigint;
  readonly payTo: Address;
  readonly asset: Address;
  /** As given: `name` and `version` must be the token's EIP-712 domain. */
  readonly extra: Readonly<Record<string, unknown>>;
  /**
   * As given, whole seconds (rounded down): how long the payer's authorization is asked to stay valid, which bounds
   * its validBefore (verifyExact). Absent in a payment built by the gateway itself, never checked again: the gateway's
   * own (maxTimeoutSecondsDefault).
   */
  readonly maxTimeoutSeconds?: bigint;
};

/** A payment that passed every check: what settlement submits. */
export type VerifiedPayment = {
  readonly version: 1 | 2;
  readonly requirements: ExactRequirements;
  readonly payer: Address;
  readonly authorization: Eip3009Authorization;
  readonly signature: Hex;
};

const uintPattern = /^[0-9]{1,78}$/;

/**
 * The payload and requirements of a request, parsed; the shape's faults refused. `payTo`: the wallet payTo must name,
 * the chain's hot wallet of now; "given", any address (a settle retried across a key rotation, answered only from what
 * was bound to the wallet it names: facilitator.ts priorSettlement; nothing is ever sent on a payment parsed so).
 */
export function parsePayment(
  rawPayload: unknown,
  rawRequirements: unknown,
  chains: ChainRegistry,
  payTo: "hotWallet" | "given" = "hotWallet",
): { ok: true; payload: PaymentPayload; requirements: ExactRequirements } | Refused {
  const version =
    typeof rawPayload === "object" && rawPayload !== null
      ? (rawPayload as { x402Version?: unknown }).x402Version
      : undefined;
  if (version !== 1 && version !== 2)
    return refusedWith("invalid_x402_version", "x402Version must be 1 or 2");
  const payload = paymentPayload.safeParse(rawPayload);
  if (!payload.success) return refusedWith("invalid_payload", "the payment payload is not x402's");
  const parsed = (version === 2 ? paymentRequirementsV2 : paymentRequirementsV1).safeParse(rawRequirements);
  if (!parsed.success)
    return refusedWith("invalid_payment_requirements", `the payment requirements are not x402 v${version}'s`);
  const req = parsed.data;
  const payloadScheme = payload.data.x402Version === 2 ? payload.data.accepted.scheme : payload.data.scheme;
  if (req.scheme !== exactScheme || payloadScheme !== exactScheme)
    return refusedWith("unsupported_scheme", `only the ${exactScheme} scheme is taken`);
  const chain = chains.byNetwork(req.network);
  if (chain === null) return refusedWith("invalid_network", `the gateway does not settle on ${req.network}`);
  const payloadNetwork =
    payload.data.x402Version === 2 ? payload.data.accepted.network : payload.data.network;
  if (payloadNetwork !== req.network)
    return refusedWith(
      "invalid_network",
      `the payment is for ${payloadNetwork}, the requirements for ${req.network}`,
    );
  const amountText = "amount" in req ? req.amount : req.maxAmountRequired;
  if (!uintPattern.test(amountText))
    return refusedWith("invalid_payment_requirements", "the amount is not a whole number of atomic units");
  if (
    !/^0x[0-9a-fA-F]{40}$/.test(req.payTo) ||
    (payTo === "hotWallet" && !isAddressEqual(req.payTo as Address, chain.hotWallet))
  )
    return refusedWith(
      "invalid_payment_requirements",
      `payTo must be the gateway's address on ${req.network}, ${getAddress(chain.hotWallet)}`,
    );
  if (!/^0x[0-9a-fA-F]{40}$/.test(req.asset) || !isAddressEqual(req.asset as Address, chain.token))
    return refusedWith(
      "invalid_payment_requirements",
      `asset must be the token the gateway settles on ${req.network}, ${getAddress(chain.token)}`,
    );
  // Refused here, a stable code at the seller's /verify, rather than each payer's authorization later: no window
  // longer than a day is taken (validForMaxS), and a client signs for the one the requirements ask.
  const maxTimeoutSeconds = BigInt(Math.floor(req.maxTimeoutSeconds)); // seconds, not money: a fraction rounded down
  if (maxTimeoutSeconds > validForMaxS)
    return refusedWith("invalid_payment_requirements", `maxTimeoutSeconds must be at most ${validForMaxS}`);
  return {
    ok: true,
    payload: payload.data,
    requirements: {
      version,
      chain,
      network: req.network,
      amount: BigInt(amountText),
      payTo: getAddress(payTo === "given" ? req.payTo : chain.hotWallet),
      asset: getAddress(chain.token),
      extra: req.extra ?? {},
      maxTimeoutSeconds,
    },
  };
}

/**
 * How verification asks the database and the chain: one statement and one simulation per payment (the
 * facilitator), or no statement and one simulation per batch of concurrent payments (the paywall: simulate-batch.ts;
 * its claim after verification, claims-batch.ts, is its check of the gateway's nonces).
 */
export type VerifyReads = {
  /**
   * Whether the gateway has taken the authorization already; null when the caller does not ask before it claims
   * (the paywall: its claim, an INSERT … ON CONFLICT DO NOTHING right after verification, refuses one already taken
   * with the same code, so a read before it would only cost every payment a statement).
   */
  isClaimed: ((db: Db, chain: X402Chain, authorization: Eip3009Authorization) => Promise<boolean>) | null;
  checkChain(chain: X402Chain, authorization: Eip3009Authorization, signature: Hex): Promise<Refused | Taken>;
  /** The token's EIP-712 domain separator (recover.ts domainSeparator), which a caller may keep; computed if absent. */
  separator?(chain: X402Chain, domain: { name: string; version: string }): Uint8Array;
  /**
   * false: the validity window is not checked (a retried settle of an authorization already sent, whose window was
   * checked when it was claimed and may have shut since: facilitator.ts priorSettlement).
   */
  windowChecked?: false;
};

export const singleReads: VerifyReads = { isClaimed, checkChain };

/** Checks a parsed payment against its requirements: everything but settlement. */
export async function verifyExact(
  deps: VerifyDeps,
  payload: PaymentPayload,
  requirements: ExactRequirements,
  reads: VerifyReads = singleReads,
): Promise<
  { ok: true; payment: VerifiedPayment; balance: BalanceReading | null; atBlock: bigint | null } | Refused
> {
  const chain = requirements.chain;
  const domain = await readDomain(deps, chain);
  if (domain === null) return refusedWith("unexpected_verify_error", "the token's domain cannot be read now");
  const given = requirements.extra;
  if (typeof given.name !== "string" || typeof given.version !== "string")
    return refusedWith(
      "invalid_exact_evm_missing_eip712_domain",
      "extra.name and extra.version are required",
    );
  if (given.name !== domain.name || given.version !== domain.version)
    return refusedWith(
      "invalid_exact_evm_token_name_mismatch",
      `the token's EIP-712 domain is name "${domain.name}", version "${domain.version}"`,
    );
  const parsed = exactEvmPayload.safeParse(payload.payload);
  if (!parsed.success)
    return refusedWith(
      "invalid_payload",
      "payload must be {signature, authorization} of an EIP-3009 transfer",
    );
  const authorization = authorizationOf(parsed.data.authorization);
  const signature = parsed.data.signature as Hex;
  const signed = await signatureValid(chain, domain, authorization, signature, reads);
  if (signed === null) return refusedWith("unexpected_verify_error", "the chain cannot be read now");
  if (!signed)
    return refusedWith(
      "invalid_exact_evm_payload_signature",
      "the signature is not the payer's over these terms",
    );
  if (!isAddressEqual(authorization.to, requirements.payTo))
    return refusedWith("invalid_exact_evm_payload_recipient_mismatch", `to must be ${requirements.payTo}`);
  const nowS = BigInt(Math.floor(deps.nowMs() / 1000));
  if (reads.windowChecked !== false && authorization.validBefore < nowS + validBeforeMarginS)
    return refusedWith(
      "invalid_exact_evm_payload_authorization_valid_before",
      "the authorization has expired",
    );
  // Bounded: a window left open longer outlives the invoice's watch (validForMaxS). Before, any validBefore was taken,
  // a day or a year ahead, though the requirements ask for maxTimeoutSeconds.
  const validForS = requirements.maxTimeoutSeconds ?? BigInt(maxTimeoutSecondsDefault);
  const validBeforeMaxS = nowS + (validForS < validForMaxS ? validForS : validForMaxS) + validBeforeSkewS;
  if (reads.windowChecked !== false && authorization.validBefore > validBeforeMaxS)
    return refusedWith(
      "invalid_exact_evm_payload_authorization_valid_before",
      `validBefore must be at most ${validBeforeMaxS} (now and maxTimeoutSeconds, ${validForS} s, capped at ${validForMaxS} s)`,
    );
  if (reads.windowChecked !== false && authorization.validAfter > nowS)
    return refusedWith(
      "invalid_exact_evm_payload_authorization_valid_after",
      "the authorization is not valid yet",
    );
  const valueOk =
    requirements.version === 2
      ? authorization.value === requirements.amount
      : authorization.value >= requirements.amount;
  if (!valueOk)
    return refusedWith(
      "invalid_exact_evm_payload_authorization_value",
      `value must be ${requirements.version === 2 ? "" : "at least "}${requirements.amount}`,
    );
  if (reads.isClaimed !== null && (await reads.isClaimed(deps.db, chain, authorization)))
    return refusedWith("invalid_exact_evm_nonce_already_used", "this authorization was already taken");
  const onChain = await reads.checkChain(chain, authorization, signature);
  if (!onChain.ok) return onChain;
  return {
    ok: true,
    payment: {
      version: requirements.version,
      requirements,
      payer: authorization.from,
      authorization,
      signature,
    },
    balance: onChain.balance,
    atBlock: onChain.atBlock,
  };
}

/**
 * Whether `signature` is the payer's over `authorization` in the token's real EIP-712 domain, as verifyExact checks it
 * (signatureValid): true / false; null when the token's domain or the chain cannot be read now.
 */
export async function signedByPayer(
  deps: Pick<VerifyDeps, "chains">,
  chain: X402Chain,
  authorization: Eip3009Authorization,
  signature: Hex,
  reads: Pick<VerifyReads, "separator">,
): Promise<boolean | null> {
  const domain = await readDomain(deps, chain);
  if (domain === null) return null;
  return await signatureValid(chain, domain, authorization, signature, reads);
}

async function readDomain(deps: Pick<VerifyDeps, "chains">, chain: X402Chain) {
  try {
    return await deps.chains.domainOf(chain);
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return null;
  }
}

/** The EIP-712 typed data of a TransferWithAuthorization on `chain`. */
export function transferTypedData(
  chain: X402Chain,
  domain: { name: string; version: string },
  authorization: Eip3009Authorization,
) {
  return {
    domain: { ...domain, chainId: chain.chainId, verifyingContract: chain.token },
    types: {
      TransferWithAuthorization: [
        { name: "from", type: "address" },
        { name: "to", type: "address" },
        { name: "value", type: "uint256" },
        { name: "validAfter", type: "uint256" },
        { name: "validBefore", type: "uint256" },
        { name: "nonce", type: "bytes32" },
      ],
    },
    primaryType: "TransferWithAuthorization",
    message: authorization,
  } as const;
}

/**
 * true / false; null when the chain could not answer. An EOA's 65-byte signature is recovered here, with no call to
 * the chain (the hot path: one request, one recovery); anything else — a contract wallet's ERC-1271 signature, an
 * ERC-6492 one, a signature that does not recover to the payer — is asked of the chain through viem.
 */
async function signatureValid(
  chain: X402Chain,
  domain: { name: string; version: string },
  authorization: Eip3009Authorization,
  signature: Hex,
  reads: Pick<VerifyReads, "separator">,
): Promise<boolean | null> {
  if (signature.length === 132) {
    if (vrsOf(signature) === null) return false;
    const digest = transferDigest(
      reads.separator?.(chain, domain) ?? domainSeparator(domain, chain.chainId, chain.token),
      authorization,
    );
    const recovered = digest === null ? null : recoverAddress(digest, signature);
    if (recovered !== null && isAddressEqual(recovered, authorization.from)) return true;
    // An EOA signs in one way only: another signer, or none, is a bad signature. A contract may still accept it.
    try {
      const code = await chain.publicClient.getCode({ address: authorization.from });
      if (code === undefined || code === "0x") return false;
    } catch (error) {
      if (!(error instanceof BaseError)) throw error;
      return null;
    }
  }
  try {
    return await chain.publicClient.verifyTypedData({
      address: authorization.from,
      ...transferTypedData(chain, domain, authorization),
      signature,
    });
  } catch (error) {
    if (error instanceof BaseError && (error.name === "HttpRequestError" || error.name === "TimeoutError"))
      return null;
    // Anything else viem (or noble under it, with plain Errors) cannot make sense of is not the payer's signature.
    if (error instanceof Error) return false;
    throw error;
  }
}

/** secp256k1's group order: r and s of a signature lie in [1, n - 1]. */
const secp256k1Order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/**
 * The EIP-3009 call's v, r, s (the token takes v as 27 or 28); null for a signature that is not 65 bytes or cannot be
 * one (v other than 0, 1, 27, 28; r or s outside [1, n - 1]).
 */
export function vrsOf(signature: Hex): { v: number; r: Hex; s: Hex } | null {
  if (signature.length !== 132) return null;
  const r = `0x${signature.slice(2, 66)}` as Hex;
  const s = `0x${signature.slice(66, 130)}` as Hex;
  const v = Number.parseInt(signature.slice(130, 132), 16);
  const inOrder = (value: Hex) => BigInt(value) > 0n && BigInt(value) < secp256k1Order;
  if (!inOrder(r) || !inOrder(s)) return null;
  if (v === 0 || v === 1) return { v: v + 27, r, s };
  if (v === 27 || v === 28) return { v, r, s };
  return null;
}

/**
 * The transfer simulated as the hot wallet would send it: one call to the chain when it would pass. Only when it
 * would not are the nonce and the payer's balance read, to say why (as the x402 reference facilitator does).
 */
export async function checkChain(
  chain: X402Chain,
  authorization: Eip3009Authorization,
  signature: Hex,
): Promise<Refused | Taken> {
  const { publicClient, token } = chain;
  const vrs = vrsOf(signature);
  if (vrs === null)
    return refusedWith(
      "invalid_exact_evm_transaction_simulation_failed",
      "the token takes a 65-byte signature (v, r, s) only",
    );
  let simulated: BaseError;
  try {
    await publicClient.simulateContract({
      account: chain.hotWallet,
      address: token,
      abi: eip3009Abi,
      functionName: "transferWithAuthorization",
      args: transferArgs(authorization, vrs),
    });
    return { ok: true, balance: null, atBlock: null };
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    simulated = error;
  }
  return (
    (await whyNotTaken(chain, authorization)) ??
    refusedWith(
      "invalid_exact_evm_transaction_simulation_failed",
      `the token would not take it: ${simulated.shortMessage}`,
    )
  );
}

/**
 * Why the token would not take an authorization a simulation refused, from reads that do not revert: its nonce used,
 * the payer's balance short, or the window shut by the chain's own clock (the gateway's checked it open, but a chain's
 * time may run ahead or behind: a development chain's after evm_increaseTime, a node far behind), or the chain
 * unreadable; null when none says.
 */
export async function whyNotTaken(
  chain: X402Chain,
  authorization: Eip3009Authorization,
): Promise<Refused | null> {
  const { publicClient, token } = chain;
  try {
    const [used, balance, latest] = await Promise.all([
      nonceUsed(chain, authorization.from, authorization.nonce),
      publicClient.readContract({
        address: token,
        abi: eip3009Abi,
        functionName: "balanceOf",
        args: [authorization.from],
      }),
      publicClient.getBlock({ blockTag: "latest" }),
    ]);
    if (used) return refusedWith("invalid_exact_evm_nonce_already_used", "the token has used this nonce");
    if (balance < authorization.value)
      return refusedWith(
        "insufficient_funds",
        `${authorization.from} holds less than ${authorization.value}`,
      );
    // The token takes it only while validAfter < block.timestamp < validBefore: the simulation's block is the next,
    // no earlier than the latest, so a window shut at the latest block's time explains the refusal.
    if (authorization.validBefore <= latest.timestamp)
      return refusedWith(
        "invalid_exact_evm_payload_authorization_valid_before",
        `the chain's time (${latest.timestamp}) is past validBefore`,
      );
    if (authorization.validAfter >= latest.timestamp)
      return refusedWith(
        "invalid_exact_evm_payload_authorization_valid_after",
        `the chain's time (${latest.timestamp}) is not past validAfter`,
      );
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return refusedWith("unexpected_verify_error", `the chain cannot be read now: ${error.shortMessage}`);
  }
  return null;
}

export function transferArgs(a: Eip3009Authorization, vrs: { v: number; r: Hex; s: Hex }) {
  return [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, vrs.v, vrs.r, vrs.s] as const;
}
