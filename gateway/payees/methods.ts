// A payee's ways to be paid, in the gateway's terms: each a core Destination a rail reaches (a Lightning Address
// through its LNURL-pay server). Pure: normalizing and refusing duplicates needs no store.
import { getAddress } from "viem";
import type { Destination } from "../../core/index.ts";

/** A payee method a core Destination already names. */
export type PayeeDestination = Extract<
  Destination,
  | { kind: "evm_address" }
  | { kind: "lightning_node" }
  | { kind: "lightning_address" }
  | { kind: "stripe_account" }
  | { kind: "account" }
>;

/** One way a payee can be paid. */
export type PayeeMethod = PayeeDestination;

export type PayeeMethodKind = PayeeMethod["kind"];

/** The most methods one payee has. */
export const payeeMethodsMax = 16;

/**
 * The method as stored: an EVM address checksummed (EIP-55), a node key and a Lightning Address in lower case.
 * The caller has checked each one's shape (the API's schema): an address that is not one throws (a bug).
 */
export function normalizeMethod(method: PayeeMethod): PayeeMethod {
  switch (method.kind) {
    case "evm_address":
      return {
        kind: "evm_address",
        address: getAddress(method.address),
        ...(method.chainId === undefined ? {} : { chainId: method.chainId }),
      };
    case "lightning_node":
      return { kind: "lightning_node", pubkey: method.pubkey.toLowerCase() };
    case "lightning_address":
      return { kind: "lightning_address", address: method.address.toLowerCase() };
    case "stripe_account":
      return { kind: "stripe_account", accountId: method.accountId };
    case "account":
      return { kind: "account", accountId: method.accountId };
  }
}

/** What makes two methods the same way to be paid; an address on any chain differs from one on chain 1. */
function identityOf(method: PayeeMethod): string {
  switch (method.kind) {
    case "evm_address":
      return `evm_address ${method.address.toLowerCase()} ${method.chainId ?? "any"}`;
    case "lightning_node":
      return `lightning_node ${method.pubkey}`;
    case "lightning_address":
      return `lightning_address ${method.address}`;
    case "stripe_account":
    case "account":
      return `${method.kind} ${method.accountId}`;
  }
}

/** The index of the first method that repeats an earlier one (after normalizing), and of that earlier one. */
export function firstDuplicate(methods: readonly PayeeMethod[]): { index: number; sameAs: number } | null {
  const seen = new Map<string, number>(); // at most payeeMethodsMax entries: the caller bounds the list
  for (const [index, method] of methods.entries()) {
    const identity = identityOf(method);
    const sameAs = seen.get(identity);
    if (sameAs !== undefined) return { index, sameAs };
    seen.set(identity, index);
  }
  return null;
}

/** The methods as core Destinations, every one, in stored order; and the Lightning Addresses among them. */
export function splitMethods(methods: readonly PayeeMethod[]): {
  destinations: PayeeDestination[];
  lightningAddresses: string[];
} {
  const destinations: PayeeDestination[] = [];
  const lightningAddresses: string[] = [];
  for (const method of methods) {
    if (method.kind === "lightning_address") lightningAddresses.push(method.address);
    destinations.push(method);
  }
  return { destinations, lightningAddresses };
}
