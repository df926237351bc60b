// What a mined EVM transaction cost its sender, read from its receipt: for the rail that sent it (adapters/evm) and
// for x402's settlement (gateway/x402), which book it alike.

/** The receipt's fields the fee is read from; an OP-stack chain's receipt carries `l1Fee` besides. */
export type FeeReceipt = { readonly gasUsed: bigint; readonly effectiveGasPrice: bigint };

/**
 * What a mined transaction cost its sender, in wei: gas used × effective gas price, and on an OP-stack chain (Base,
 * Optimism) the L1 data fee its receipt carries besides, which the sender pays too (often as much as the rest there).
 * Without it the hot wallet's ETH fell below its clearing account by that fee on every transaction.
 */
export function feeWeiOf(receipt: FeeReceipt): bigint {
  return receipt.gasUsed * receipt.effectiveGasPrice + l1FeeWeiOf(receipt);
}

/** The receipt's `l1Fee`: a bigint through viem's OP-stack formatters, hex through the generic one; else 0. */
export function l1FeeWeiOf(receipt: object): bigint {
  const { l1Fee } = receipt as { l1Fee?: unknown };
  if (typeof l1Fee === "bigint") return l1Fee > 0n ? l1Fee : 0n;
  if (typeof l1Fee === "string" && /^0x[0-9a-fA-F]{1,64}$/.test(l1Fee)) return BigInt(l1Fee);
  return 0n;
}
