// The local recovery against viem's recoverTypedDataAddress: the same signer for random terms and keys, nobody (not
// a throw) for what cannot be a signature, and the high-s twin of a signature recovering as viem recovers it.
import { type Address, type Hex, hashTypedData, isAddressEqual, recoverTypedDataAddress } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { domainSeparator, recoverAddress, transferDigest } from "./recover.ts";

const order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const random = (bytes: number) =>
  `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex")}` as Hex;
const word = (value: bigint) => value.toString(16).padStart(64, "0");

function typed(
  chainId: number,
  token: Address,
  domain: { name: string; version: string },
  message: {
    from: Address;
    to: Address;
    value: bigint;
    validAfter: bigint;
    validBefore: bigint;
    nonce: Hex;
  },
) {
  return {
    domain: { ...domain, chainId, verifyingContract: token },
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
    message,
  } as const;
}

async function viemSigner(data: ReturnType<typeof typed>, signature: Hex): Promise<Address | null> {
  try {
    return await recoverTypedDataAddress({ ...data, signature });
  } catch (error) {
    if (error instanceof Error) return null;
    throw error;
  }
}

describe("recoverAddress over transferDigest", () => {
  it("finds viem's signer for random keys, terms and domains; the high-s twin recovers as viem's does", async () => {
    for (let i = 0; i < 60; i += 1) {
      const account = privateKeyToAccount(generatePrivateKey());
      const domain = { name: i % 2 === 0 ? "USD Coin" : `Token ${i} ✓`, version: String(1 + (i % 3)) };
      const chainId = [1, 8453, 31337, 84532][i % 4]!;
      const token = random(20);
      const message = {
        from: account.address,
        to: random(20),
        value: BigInt(random(i % 5 === 0 ? 32 : 8)),
        validAfter: BigInt(random(4)),
        validBefore: BigInt(random(8)),
        nonce: random(32),
      };
      const data = typed(chainId, token, domain, message);
      const signature = await account.signTypedData(data);
      const digest = transferDigest(domainSeparator(domain, chainId, token), message)!;
      expect(Buffer.from(digest).toString("hex")).toBe(hashTypedData(data).slice(2));
      const mine = recoverAddress(digest, signature);
      expect(mine !== null && isAddressEqual(mine, account.address)).toBe(true);
      // The same r with s' = n - s and v flipped: a valid (if malleable) signature of the same key.
      const s = BigInt(`0x${signature.slice(66, 130)}`);
      const v = Number.parseInt(signature.slice(130), 16);
      const twin = `${signature.slice(0, 66)}${word(order - s)}${(v === 27 ? 28 : 27).toString(16)}` as Hex;
      const theirs = await viemSigner(data, twin);
      const twinMine = recoverAddress(digest, twin);
      expect(twinMine === null ? null : twinMine.toLowerCase()).toBe(
        theirs === null ? null : theirs.toLowerCase(),
      );
      // v as 0/1 recovers the same signer as 27/28.
      const low = `${signature.slice(0, 130)}${(v - 27).toString(16).padStart(2, "0")}` as Hex;
      expect(recoverAddress(digest, low)?.toLowerCase()).toBe(account.address.toLowerCase());
    }
  });

  it("recovers nobody, never throws, for what cannot be a signature; another signer for altered terms", async () => {
    const account = privateKeyToAccount(generatePrivateKey());
    const domain = { name: "USD Coin", version: "2" };
    const token = random(20);
    const message = {
      from: account.address,
      to: random(20),
      value: 1000n,
      validAfter: 0n,
      validBefore: 2n ** 40n,
      nonce: random(32),
    };
    const data = typed(31337, token, domain, message);
    const signature = await account.signTypedData(data);
    const digest = transferDigest(domainSeparator(domain, 31337, token), message)!;
    const r = signature.slice(2, 66);
    const s = signature.slice(66, 130);
    const bad: Hex[] = [
      "0x",
      signature.slice(0, 130) as Hex,
      `${signature}00` as Hex,
      `0x${r}${s}1d`,
      `0x${r}${s}02`,
      `0x${r}${s}ff`,
      `0x${word(0n)}${s}1b`,
      `0x${r}${word(0n)}1b`,
      `0x${word(order)}${s}1b`,
      `0x${r}${word(order)}1c`,
      `0x${"f".repeat(64)}${s}1b`,
      `0x${r}${s.slice(0, 63)}g1b` as Hex,
    ];
    for (const bytes of bad) expect(recoverAddress(digest, bytes)).toBeNull();
    // r values with no point (x³ + 7 not a square): viem refuses them, so do we; random ones agree with viem.
    let noPoint = 0;
    for (let i = 0; i < 200; i += 1) {
      const forged = `0x${random(32).slice(2)}${random(32).slice(2)}${i % 2 === 0 ? "1b" : "1c"}` as Hex;
      const theirs = await viemSigner(data, forged);
      const mine = recoverAddress(digest, forged);
      if (theirs === null) noPoint += 1;
      expect(mine === null ? null : mine.toLowerCase()).toBe(theirs === null ? null : theirs.toLowerCase());
    }
    expect(noPoint).toBeGreaterThan(0);
    const altered = transferDigest(domainSeparator(domain, 31337, token), { ...message, value: 1001n })!;
    expect(recoverAddress(altered, signature)?.toLowerCase()).not.toBe(account.address.toLowerCase());
    expect(transferDigest(domainSeparator(domain, 31337, token), { ...message, value: -1n })).toBeNull();
    expect(transferDigest(domainSeparator(domain, 31337, token), { ...message, nonce: "0x12" })).toBeNull();
  });
});
