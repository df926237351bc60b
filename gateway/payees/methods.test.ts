import { describe, expect, it } from "vitest";
import { firstDuplicate, normalizeMethod, type PayeeMethod, splitMethods } from "./methods.ts";

const checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const pubkey = `02${"ab".repeat(32)}`;

describe("normalizeMethod", () => {
  it("checksums an EVM address, keeps its chain, and lower-cases a node key and a Lightning Address", () => {
    expect(
      normalizeMethod({ kind: "evm_address", address: checksummed.toLowerCase() as `0x${string}` }),
    ).toEqual({ kind: "evm_address", address: checksummed });
    expect(normalizeMethod({ kind: "evm_address", address: checksummed, chainId: 10 })).toEqual({
      kind: "evm_address",
      address: checksummed,
      chainId: 10,
    });
    expect(normalizeMethod({ kind: "lightning_node", pubkey: pubkey.toUpperCase() })).toEqual({
      kind: "lightning_node",
      pubkey,
    });
    expect(normalizeMethod({ kind: "lightning_address", address: "Alice@Example.COM" })).toEqual({
      kind: "lightning_address",
      address: "alice@example.com",
    });
    expect(normalizeMethod({ kind: "stripe_account", accountId: "acct_1AbC" })).toEqual({
      kind: "stripe_account",
      accountId: "acct_1AbC",
    });
  });
});

describe("firstDuplicate", () => {
  const address = (chainId?: number): PayeeMethod => ({
    kind: "evm_address",
    address: checksummed,
    ...(chainId === undefined ? {} : { chainId }),
  });

  it("finds the first method that repeats an earlier one, and which", () => {
    const methods: PayeeMethod[] = [
      address(),
      { kind: "account", accountId: "acct_a" },
      { kind: "lightning_node", pubkey },
      { kind: "account", accountId: "acct_a" },
      address(),
    ];
    expect(firstDuplicate(methods)).toEqual({ index: 3, sameAs: 1 });
  });

  it("tells an address on any chain, on one chain and on another apart; and a Stripe id from an account id", () => {
    expect(
      firstDuplicate([
        address(),
        address(1),
        address(10),
        { kind: "stripe_account", accountId: "acct_x" },
        { kind: "account", accountId: "acct_x" },
      ]),
    ).toBeNull();
    expect(firstDuplicate([address(1), address(10), address(1)])).toEqual({ index: 2, sameAs: 0 });
  });
});

describe("splitMethods", () => {
  it("returns every method as a core destination, in order, and the Lightning Addresses among them", () => {
    expect(
      splitMethods([
        { kind: "lightning_address", address: "a@example.com" },
        { kind: "account", accountId: "acct_a" },
        { kind: "lightning_address", address: "b@example.com" },
        { kind: "evm_address", address: checksummed, chainId: 1 },
      ]),
    ).toEqual({
      destinations: [
        { kind: "lightning_address", address: "a@example.com" },
        { kind: "account", accountId: "acct_a" },
        { kind: "lightning_address", address: "b@example.com" },
        { kind: "evm_address", address: checksummed, chainId: 1 },
      ],
      lightningAddresses: ["a@example.com", "b@example.com"],
    });
  });
});
