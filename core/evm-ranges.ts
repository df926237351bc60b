// A range of blocks read from a node that may refuse or fail a read of it whole (a provider's cap on the blocks one
// eth_getLogs spans or the logs it returns, a gateway giving up on a slow one): read in halves, as the EVM deposit
// watcher (adapters/evm) reads the token's logs and as x402 searches for a copy of an authorization (gateway/x402).
import {
  BaseError,
  HttpRequestError,
  RpcError,
  RpcRequestError,
  SocketClosedError,
  WebSocketRequestError,
} from "viem";

/**
 * `read` of [from, to], split in halves while the node refuses a range or cannot answer it in time (a provider's cap
 * on the logs one call returns or the blocks it spans; a timeout, a gateway's 5xx), down to one block, whose failure is
 * thrown — or, with `oneBlock`, read by it instead when the node answered it with an error of its own (a JSON-RPC
 * error: too many results), never for a timeout or a 5xx, which the next poll tries again. A node out of reach (no
 * connection, a closed socket) or rate-limiting (HTTP 429) is thrown at once: halving would only ask it more.
 * `splits` narrows which failures are split (a caller a payer waits on splits only a refusal: nodeRefused).
 */
export async function readInHalves<T>(
  from: bigint,
  to: bigint,
  read: (fromBlock: bigint, toBlock: bigint) => Promise<T[]>,
  oneBlock?: (block: bigint) => Promise<T[]>,
  splits: (error: unknown) => boolean = () => true,
): Promise<T[]> {
  try {
    return await read(from, to);
  } catch (error) {
    if (outOfReach(error) || !splits(error)) throw error;
    if (from >= to) {
      if (oneBlock === undefined || !nodeRefused(error)) throw error;
      return oneBlock(from);
    }
    const middle = from + (to - from) / 2n;
    return [
      ...(await readInHalves(from, middle, read, oneBlock, splits)),
      ...(await readInHalves(middle + 1n, to, read, oneBlock, splits)),
    ];
  }
}

/** The node answered with a JSON-RPC error of its own (not a transport's failure, a timeout or a gateway's 5xx). */
export function nodeRefused(error: unknown): boolean {
  return (
    error instanceof BaseError &&
    error.walk((inner) => inner instanceof RpcError || inner instanceof RpcRequestError) != null
  );
}

/** No answer from the node at all, or its provider's rate limit: not something a smaller range would change. */
function outOfReach(error: unknown): boolean {
  if (!(error instanceof BaseError)) return false;
  const cause = error.walk(
    (inner) =>
      (inner instanceof HttpRequestError && (inner.status === undefined || inner.status === 429)) ||
      inner instanceof SocketClosedError ||
      inner instanceof WebSocketRequestError,
  );
  return cause !== null && cause !== undefined;
}
