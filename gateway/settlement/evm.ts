// The EVM side of settlement: RevenueSplitter events mirrored into the ledger (evm-mirror.ts). The events come
// from the EVM adapter's chain watcher, which the composition root (gateway/app/evm.ts) builds with this
// mirror as its sink; the two share only core's event types (core/evm-events.ts).
import type { Address } from "viem";
import type { Asset, Logger, SplitterEventSink } from "../../core/index.ts";
import { type Ledger, openAccounts } from "../ledger/index.ts";
import { createEvmMirror, evmMirrorAccountCodes, evmMirrorAccounts } from "./evm-mirror.ts";

export {
  createEvmMirror,
  EvmMirrorError,
  type EvmMirrorParams,
  evmMirrorAccountCodes,
  evmMirrorAccounts,
  evmMirrorTransferCodes,
  evmMirrorTransferId,
} from "./evm-mirror.ts";

export type SplitterMirrorParams = {
  ledger: Ledger;
  chainId: number;
  splitter: Address;
  token: { address: Address; asset: Asset };
  /** The gateway's hot wallet: its settleBatch calls are mirrored. */
  hotWallet: Address;
  logger?: Logger;
};

/** Opens the splitter's ledger mirror: its contract-wide accounts made sure of, the sink for the watcher returned. */
export async function openSplitterMirror(params: SplitterMirrorParams): Promise<SplitterEventSink> {
  // The contract-wide accounts exist from the start (a split's accounts appear with its first event).
  const ids = evmMirrorAccounts({ chainId: params.chainId, splitter: params.splitter });
  const asset = params.token.asset;
  const account = (id: bigint, code: number) => ({
    id,
    ledger: asset.ledger,
    code,
    balance: "none" as const,
  });
  await openAccounts(
    params.ledger,
    [
      account(ids.custody(asset), evmMirrorAccountCodes.splitterCustody),
      account(ids.batchPayouts(asset), evmMirrorAccountCodes.batchPayouts),
      account(ids.batchOutflow(asset), evmMirrorAccountCodes.batchOutflow),
    ],
    (spec) => `splitter mirror account ${spec.id}`,
  );
  return createEvmMirror({
    ledger: params.ledger,
    chainId: params.chainId,
    splitter: params.splitter,
    tokens: new Map([[params.token.address.toLowerCase(), params.token.asset]]),
    hotWallet: { address: params.hotWallet },
    ...(params.logger === undefined ? {} : { logger: params.logger }),
  });
}
