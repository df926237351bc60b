// EIP-712 typed data for the token's signed transfers (EIP-3009, EIP-2612), to pass to signTypedData, and the
// EIP-3009 nonce RevenueSplitter.payWithAuthorization expects.
import { type Address, encodeAbiParameters, type Hex, keccak256 } from "viem";

/** The EIP-3009 nonce for payWithAuthorization, as RevenueSplitter.authorizationNonceOf. */
export function authorizationNonceOf(splitId: Hex, ref: Hex): Hex {
  return keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "bytes32" }], [splitId, ref]));
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
