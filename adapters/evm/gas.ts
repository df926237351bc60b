// The EVM rail's gas policy (EIP-1559): a gas unit is expected to cost the latest block's base fee plus the
// configured priority fee, and never more than the configured cap. The snapshot prices a payout at that
// expected price; a transaction is sent with maxPriorityFeePerGas = the priority fee and maxFeePerGas = twice
// the base fee plus it (room for the base fee to rise ~12.5% a block for several blocks), bounded by the cap.
// When the base fee alone leaves no room under the cap the rail refuses to send: fee_above_max, nothing sent.
import type { Chain, PublicClient, Transport } from "viem";
import { EvmRailError } from "./errors.ts";

export type GasPolicy = {
  /** The tip offered above the base fee, wei per gas. */
  readonly priorityFeeWei: bigint;
  /** The most the rail pays per gas, base fee and tip together. */
  readonly maxFeeWei: bigint;
};

/** What one transaction is sent with, and what a gas unit is expected to cost at the base fee it was priced on. */
export type GasFees = {
  readonly kind: "fees";
  readonly baseFeeWei: bigint;
  readonly maxFeePerGas: bigint;
  readonly maxPriorityFeePerGas: bigint;
  /** Base fee + priority fee: the price the snapshot quotes. */
  readonly expectedPriceWei: bigint;
};

/** The base fee leaves no room for the tip under the cap. */
export type GasAboveMax = {
  readonly kind: "above_max";
  readonly baseFeeWei: bigint;
  readonly maxFeeWei: bigint;
};

/** How many times the base fee the max fee allows (before the tip), within the cap. */
const baseFeeHeadroomFactor = 2n;

export function gasFeesFor(policy: GasPolicy, baseFeeWei: bigint): GasFees | GasAboveMax {
  const expectedPriceWei = baseFeeWei + policy.priorityFeeWei;
  if (expectedPriceWei > policy.maxFeeWei)
    return { kind: "above_max", baseFeeWei, maxFeeWei: policy.maxFeeWei };
  const roomy = baseFeeWei * baseFeeHeadroomFactor + policy.priorityFeeWei;
  return {
    kind: "fees",
    baseFeeWei,
    maxFeePerGas: roomy < policy.maxFeeWei ? roomy : policy.maxFeeWei,
    maxPriorityFeePerGas: policy.priorityFeeWei,
    expectedPriceWei,
  };
}

/** The latest block's base fee (wei per gas). A chain without EIP-1559 is a configuration this rail does not run on. */
export async function readBaseFee(publicClient: PublicClient<Transport, Chain>): Promise<bigint> {
  const block = await publicClient.getBlock({ blockTag: "latest" });
  if (block.baseFeePerGas === null)
    throw new EvmRailError(
      "the chain's blocks have no base fee (no EIP-1559): the EVM rail does not run on it",
      {
        details: `chain ${publicClient.chain.id}, block ${block.number}`,
      },
    );
  return block.baseFeePerGas;
}

/** The fees a gas unit needs now, as the policy says. */
export async function currentGasFees(
  publicClient: PublicClient<Transport, Chain>,
  policy: GasPolicy,
): Promise<GasFees | GasAboveMax> {
  return gasFeesFor(policy, await readBaseFee(publicClient));
}

/** "12.5 gwei" for messages. */
export function gweiText(wei: bigint): string {
  const whole = wei / 1_000_000_000n;
  const fraction = (wei % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${whole}${fraction === "" ? "" : `.${fraction}`} gwei`;
}
