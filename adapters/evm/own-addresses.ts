// The gateway's own addresses on an EVM rail: its hot wallet, its RevenueSplitter, its ForwarderFactory and
// every deposit address (forwarder) it issued for an invoice. A payout to one of them moves nothing out of the
// gateway — a transfer from the hot wallet to itself leaves its balance as it was, one to a forwarder comes back
// with the next sweep — while the ledger would book the payment as paid out of the rail's clearing account, so
// the ledger and the chain would part. The payments service asks before anything is held, and refuses.
import type { Destination } from "../../core/index.ts";
import type { EvmRailState } from "./rail-state.ts";

/**
 * Whether `destination` is one of this rail's own addresses. The chain the destination names is not asked: an
 * address is the same key on every chain (the hot wallet's key signs on each), so a 0x address that is ours on
 * one chain is refused whichever rail would pay it.
 */
export async function ownsDestination(state: EvmRailState, destination: Destination): Promise<boolean> {
  if (destination.kind !== "evm_address") return false;
  const address = destination.address.toLowerCase();
  const fixed = [state.account.address, state.params.splitter, state.deposits?.params.factory];
  if (fixed.some((own) => own !== undefined && own.toLowerCase() === address)) return true;
  if (state.deposits === null) return false;
  const rows = await state.params.db.query<{ found: number }>(
    "SELECT 1 AS found FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND deposit_address = $3 LIMIT 1",
    [state.chainId, state.params.token.address.toLowerCase(), address],
  );
  return rows.length > 0;
}
