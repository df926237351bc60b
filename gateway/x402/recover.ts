// The signer of an EIP-3009 TransferWithAuthorization, recovered without viem's generic typed-data path: the
// EIP-712 digest is hashed from its fixed layout (the domain separator once per chain, token and domain; the struct
// hash over seven 32-byte words; Keccak-256 by the `keccak` addon, core/keccak.ts) and the public key recovered by
// libsecp256k1 (the `secp256k1` package's N-API build; its own JavaScript fallback when the addon cannot load). A
// signature that cannot be one — not 65 bytes, v not 0/1/27/28, r or s outside [1, n - 1], an r that is no point's
// x — recovers nobody (null); nothing here throws for the payer's bytes. A high s recovers as viem's
// recoverTypedDataAddress does (the token refuses it later).
import type { Address, Hex } from "viem";
import { keccak256Bytes as keccak } from "../../core/keccak.ts";
import { secp256k1 } from "../../core/secp256k1.ts";

const encoder = new TextEncoder();

const domainTypeHash = keccak(
  encoder.encode("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
);
const transferTypeHash = keccak(
  encoder.encode(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)",
  ),
);

/** secp256k1's group order: r and s of a signature lie in [1, n - 1]. */
const order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const maxUint256 = (1n << 256n) - 1n;

function putWord(into: Uint8Array, at: number, value: bigint): void {
  let rest = value;
  for (let i = 31; i >= 0; i -= 1) {
    into[at + i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}

/** Writes a 0x-prefixed hex of `length` bytes right-aligned in the word at `at`; false when it is not that. */
function putHex(into: Uint8Array, at: number, hex: string, length: number): boolean {
  if (hex.length !== 2 + 2 * length || !/^0x[0-9a-fA-F]*$/.test(hex)) return false;
  into.set(Buffer.from(hex.slice(2), "hex"), at + 32 - length);
  return true;
}

/** The EIP-712 domain separator of `{name, version, chainId, verifyingContract}`. */
export function domainSeparator(
  domain: { name: string; version: string },
  chainId: number,
  verifyingContract: Address,
): Uint8Array {
  const words = new Uint8Array(5 * 32);
  words.set(domainTypeHash, 0);
  words.set(keccak(encoder.encode(domain.name)), 32);
  words.set(keccak(encoder.encode(domain.version)), 64);
  putWord(words, 96, BigInt(chainId));
  putHex(words, 128, verifyingContract, 20);
  return keccak(words);
}

export type TransferTerms = {
  from: Address;
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
};

/** The digest an EIP-3009 TransferWithAuthorization signature signs; null for terms that cannot be encoded. */
export function transferDigest(separator: Uint8Array, terms: TransferTerms): Uint8Array | null {
  const words = new Uint8Array(7 * 32);
  words.set(transferTypeHash, 0);
  if (!putHex(words, 32, terms.from, 20) || !putHex(words, 64, terms.to, 20)) return null;
  for (const [at, value] of [
    [96, terms.value],
    [128, terms.validAfter],
    [160, terms.validBefore],
  ] as const) {
    if (value < 0n || value > maxUint256) return null;
    putWord(words, at, value);
  }
  if (!putHex(words, 192, terms.nonce, 32)) return null;
  const message = new Uint8Array(66);
  message[0] = 0x19;
  message[1] = 0x01;
  message.set(separator, 2);
  message.set(keccak(words), 34);
  return keccak(message);
}

/** The address (lower case) whose key made the 65-byte `signature` (r ‖ s ‖ v) over `digest`; null when none can have. */
export function recoverAddress(digest: Uint8Array, signature: Hex): Address | null {
  if (signature.length !== 132 || !/^0x[0-9a-fA-F]{130}$/.test(signature)) return null;
  const v = Number.parseInt(signature.slice(130, 132), 16);
  const recid = v === 0 || v === 1 ? v : v === 27 || v === 28 ? v - 27 : -1;
  if (recid < 0) return null;
  const r = BigInt(`0x${signature.slice(2, 66)}`);
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  if (r <= 0n || r >= order || s <= 0n || s >= order) return null;
  let publicKey: Uint8Array;
  try {
    publicKey = secp256k1.ecdsaRecover(Buffer.from(signature.slice(2, 130), "hex"), recid, digest, false);
  } catch (error) {
    // libsecp256k1 finds no point for this r (or no key): the payer's bad bytes, not a fault of ours.
    if (error instanceof Error) return null;
    throw error;
  }
  const hash = keccak(publicKey.subarray(1));
  // Lower case, not checksummed (a hash less): compare it with isAddressEqual.
  return `0x${Buffer.from(hash.subarray(12)).toString("hex")}`;
}
