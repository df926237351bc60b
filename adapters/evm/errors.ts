// The EVM adapter's thrown errors and the one place viem's errors (JSON-RPC, transport, contract) are translated:
// into a SwitchyardError with viem's short message and details as its details and viem's error as its cause.
// (A revert met in gas estimation is not thrown: reverts.ts reads it into the rail's closed set of failures.)
import {
  BaseError,
  ExecutionRevertedError,
  HttpRequestError,
  InsufficientFundsError,
  SocketClosedError,
  TimeoutError,
  WebSocketRequestError,
} from "viem";
import { SwitchyardError, type SwitchyardErrorOptions } from "../../core/index.ts";

/** The EVM rail's: a bug, a misconfiguration, or the node out of reach or answering nonsense. */
export class EvmRailError extends SwitchyardError {
  override name = "EvmRailError";
}

/** viem's account of what went wrong, in one line: its short message, and what the node said when it said more. */
export function viemDetails(error: unknown): string {
  if (!(error instanceof BaseError))
    return error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
  return error.details && error.details !== error.shortMessage
    ? `${error.shortMessage} (${error.details})`
    : error.shortMessage;
}

/**
 * The translation at the adapter's boundary: a viem error thrown by `fn` becomes `make(doing, …)` with viem's
 * account as details and viem's error as the cause. The adapter's own errors, and anything not viem's (a bug, a
 * database error translated by its store), pass through unchanged.
 */
export async function translatingViemErrors<T>(
  doing: string,
  fn: () => Promise<T>,
  make: (shortMessage: string, options: SwitchyardErrorOptions) => SwitchyardError = (
    shortMessage,
    options,
  ) => new EvmRailError(shortMessage, options),
): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof BaseError)
      throw make(`${doing} failed`, { details: viemDetails(error), cause: error });
    throw error;
  }
}

/** The node did not answer (refused, timed out, closed the socket): it said nothing about the call itself. */
export function nodeUnreachable(error: unknown): boolean {
  if (!(error instanceof BaseError)) return false;
  const transport = error.walk(
    (cause) =>
      cause instanceof HttpRequestError ||
      cause instanceof TimeoutError ||
      cause instanceof WebSocketRequestError ||
      cause instanceof SocketClosedError,
  );
  return transport !== null && transport !== undefined;
}

const executionErrorCode = 3;

/**
 * Whether the chain refused the call itself: it reverted (with or without data the gateway decodes), or the wallet
 * cannot pay its gas. Anything else a node answers (a rate limit inside a 200, "header not found" from a node behind,
 * an error no class names) says nothing of the call.
 */
export function chainRefused(error: unknown): boolean {
  if (!(error instanceof BaseError)) return false;
  const refusal = error.walk(
    (cause) =>
      cause instanceof ExecutionRevertedError ||
      cause instanceof InsufficientFundsError ||
      // JSON-RPC's code 3, an execution error (geth's "execution reverted"; Hardhat's own error under an
      // UnknownRpcError, which viem does not name)
      (cause as { code?: unknown }).code === executionErrorCode,
  );
  return refusal !== null && refusal !== undefined;
}

/** Every message in the error's chain (a node's reason often sits in `details`, below a generic short message). */
export function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < errorChainDepthMax && current instanceof Error; depth++) {
    parts.push(current.message);
    if ("details" in current && typeof current.details === "string") parts.push(current.details);
    current = current.cause;
  }
  return parts.join(" | ");
}

const errorChainDepthMax = 8;

/** viem's short message (without the request and version lines viem appends to its message). */
export function shortMessage(error: unknown): string {
  if (
    error !== null &&
    typeof error === "object" &&
    "shortMessage" in error &&
    typeof error.shortMessage === "string"
  )
    return error.shortMessage;
  return error instanceof Error ? error.message : String(error);
}
