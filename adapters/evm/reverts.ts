// A revert met in gas estimation: the name of the custom error the call reverted with, decoded with our
// contracts' ABIs, and what it means in the rail's closed set of failures.
import { BaseError, decodeErrorResult, type Hex } from "viem";
import type { RailFailureCode } from "../../core/index.ts";
import { revenueSplitterAbi, testUsdErrorsAbi } from "./abi.generated.ts";

/** Errors the splitter or the token may revert with, for decoding reverts met in gas estimation. */
const revertAbi = [...revenueSplitterAbi, ...testUsdErrorsAbi] as const;

/**
 * USDC's (FiatTokenV2_2's) reason strings, read as the custom error TestUSD (OpenZeppelin's ERC20 and ERC3009) reverts
 * with for the same refusal, so that the rail means one thing by both: matched by their words, whatever the prefix
 * ("FiatTokenV2: …", "ECRecover: invalid signature …", "ERC20: …").
 */
const reasonsAsErrors: readonly (readonly [RegExp, string])[] = [
  [/authorization is used or canceled$/, "ERC3009UsedAuthorization"],
  [/authorization is (not yet valid|expired)$/, "ERC3009InvalidAuthorizationTime"],
  [/invalid signature/, "ERC3009InvalidSignature"],
  [/transfer amount exceeds balance$/, "ERC20InsufficientBalance"],
  [/transfer amount exceeds allowance$/, "ERC20InsufficientAllowance"],
];

/**
 * The name of the custom error a call reverted with, when the node returned its data; a reason string USDC reverts
 * with, as the custom error it means (reasonsAsErrors); any other reason string, `Error`.
 */
export function revertName(error: unknown): string | null {
  const decoded = decodedRevert(error);
  if (decoded === null) return null;
  const [reason] = decoded.args ?? [];
  if (decoded.errorName === "Error" && typeof reason === "string")
    for (const [words, name] of reasonsAsErrors) if (words.test(reason)) return name;
  return decoded.errorName;
}

/**
 * What a call reverted with, in words: one of our contracts' errors by its name, a reason string (`require`'s, as
 * USDC's "Blacklistable: account is blacklisted") as it is; null when the node returned no data we can read.
 */
export function revertText(error: unknown): string | null {
  const decoded = decodedRevert(error);
  if (decoded === null) return null;
  const [reason] = decoded.args ?? [];
  return decoded.errorName === "Error" && typeof reason === "string" ? reason : decoded.errorName;
}

function decodedRevert(error: unknown): { errorName: string; args?: readonly unknown[] } | null {
  if (!(error instanceof BaseError)) return null;
  const withData = error.walk((cause) => {
    const data = (cause as { data?: unknown }).data;
    return typeof data === "string" && data.startsWith("0x") && data.length >= 10;
  }) as { data?: Hex } | null;
  if (withData?.data === undefined) return null;
  try {
    return decodeErrorResult({ abi: revertAbi, data: withData.data });
  } catch (decodeError) {
    if (decodeError instanceof BaseError) return null; // not one of our errors: the message says what it was
    throw decodeError;
  }
}

/** A revert in gas estimation, in the rail's closed set of failures. */
export function failureCodeOf(revert: string | null): RailFailureCode {
  switch (revert) {
    case "RevenueSplitterUnknownSplit":
      return "unreachable_destination";
    case "ERC20InsufficientBalance":
    case "ERC20InsufficientAllowance":
    case null:
      return "insufficient_liquidity";
    default:
      return "rejected";
  }
}
