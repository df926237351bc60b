// Whether a receipt paid an authorization's very terms (spends.ts paidIn): the token's AuthorizationUsed of (payer,
// nonce) and the Transfer paired with it — the next log — of the value from the payer to the recipient. Never just any
// Transfer of the payer's in the transaction. On receipts made here, log by log.
import { type Address, type Hex, keccak256, numberToHex, pad, toBytes } from "viem";
import { describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import type { X402Chain } from "./chains.ts";
import { paidIn } from "./spends.ts";

const token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const otherToken: Address = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const payer: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
const hotWallet: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const elsewhere: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const chain = { token, hotWallet, chainId: 31337, asset: assets.USDC } as unknown as X402Chain;
const nonce: Hex = keccak256(toBytes("nonce 1"));
const otherNonce: Hex = keccak256(toBytes("nonce 2"));
const authorization = { from: payer, to: hotWallet, value: 500n, nonce };

const used = (authorizer: Address, n: Hex, address: Address = token) => ({
  address,
  topics: [keccak256(toBytes("AuthorizationUsed(address,bytes32)")), pad(authorizer), n],
  data: "0x" as Hex,
});
const transfer = (from: Address, to: Address, value: bigint, address: Address = token) => ({
  address,
  topics: [keccak256(toBytes("Transfer(address,address,uint256)")), pad(from), pad(to)],
  data: numberToHex(value, { size: 32 }),
});
const receipt = (
  logs: ReturnType<typeof used | typeof transfer>[],
  status: "success" | "reverted" = "success",
) => ({
  status,
  logs: logs.map((log, logIndex) => ({ ...log, logIndex })) as never,
});

describe("paidIn", () => {
  it("is the authorization's AuthorizationUsed and, right after it, its Transfer of the value to the recipient", () => {
    expect(
      paidIn(chain, receipt([used(payer, nonce), transfer(payer, hotWallet, 500n)]), authorization),
    ).toBe(true);
  });

  it("is not a reverted transaction's", () => {
    expect(
      paidIn(
        chain,
        receipt([used(payer, nonce), transfer(payer, hotWallet, 500n)], "reverted"),
        authorization,
      ),
    ).toBe(false);
  });

  it("is not another authorization's Transfer beside a use of this nonce that paid elsewhere", () => {
    // One transaction: another authorization of the payer (another nonce) paying the hot wallet the same value, and
    // this nonce used to pay the payer's own other address. The money for this payment never came.
    const mixed = receipt([
      used(payer, otherNonce),
      transfer(payer, hotWallet, 500n),
      used(payer, nonce),
      transfer(payer, elsewhere, 1n),
    ]);
    expect(paidIn(chain, mixed, authorization)).toBe(false);
    expect(paidIn(chain, mixed, { ...authorization, nonce: otherNonce })).toBe(true);
  });

  it("is not a Transfer of another value, to another address, or of another token", () => {
    for (const next of [
      transfer(payer, hotWallet, 499n),
      transfer(payer, elsewhere, 500n),
      transfer(payer, hotWallet, 500n, otherToken),
    ])
      expect(paidIn(chain, receipt([used(payer, nonce), next]), authorization)).toBe(false);
    expect(
      paidIn(
        chain,
        receipt([used(payer, nonce, otherToken), transfer(payer, hotWallet, 500n)]),
        authorization,
      ),
    ).toBe(false);
  });
});
