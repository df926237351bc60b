// The gas of every transaction the hot wallet sent, whoever sent it: the hot wallet pays gas in the native token for
// each send of the journal that is mined, succeeded or reverted, and the rail's ETH clearing account must move with it.
// Most sends' gas is booked by the caller that reads their outcome; the rest is nobody's payment — the splitter's
// approve, a netting batch or a payout that reverted — and would never be booked. A pass over the journal takes each
// send mined with the confirmations and not seen by a pass before (evm_send_gas), and hands its gas to the caller's
// booker when no caller books it, then marks it done (booked by the pass, or by whom).
//
// Who books a send's gas, by the kind its key names (sendKindOf):
//
//   payout attempt (<attempt id>)  succeeded: the payment's or refund's native fee (the outcome's nativeFee);
//                                  reverted: this pass
//   approve:<key>                  this pass (the splitter's one-time approve, sent before a pay or settleBatch)
//   settle:<ref>                   succeeded: netting's batch gas (payoutBatch's nativeFee); reverted: this pass
//   auth:…, distribute:…           this pass (payWithAuthorization, distribute: no caller books their `gas`)
//   sweep:…                        the sweep's booker, succeeded or reverted (sweeps.ts)
//   x402-batch:…                   x402's batch settler or its reconciliation, succeeded or reverted
//   transfer-auth:…                x402's single settler or its reconciliation, succeeded or reverted
//   receive-auth:…                 this pass (an invoice's authorization: the watcher credits the invoice, no gas)
//
// A kind not in the table is booked by this pass: a new kind of send whose caller books its gas must be named here,
// or it is booked twice. Bookings are idempotent by the transaction (the booker's id), so a crash between booking
// and marking books nothing twice.
import type { Hex } from "viem";
import type { FeePaid } from "../../core/index.ts";
import { gasPaid } from "./payout.ts";
import type { EvmRailState } from "./rail-state.ts";
import { finalReceiptOf } from "./send-journal.ts";

export type SendKind =
  | "payout"
  | "approve"
  | "settle_batch"
  | "pay_with_authorization"
  | "distribute"
  | "sweep"
  | "x402_batch"
  | "transfer_authorization"
  | "receive_authorization"
  | "unknown";

/** The key prefixes the rail sends under (the part before the first colon). */
const kindByPrefix: Readonly<Record<string, SendKind>> = {
  approve: "approve",
  settle: "settle_batch",
  auth: "pay_with_authorization",
  distribute: "distribute",
  sweep: "sweep",
  "x402-batch": "x402_batch",
  "transfer-auth": "transfer_authorization",
  "receive-auth": "receive_authorization",
};

/** What a send is, from its key: an attempt id has no colon; every other send's key is prefixed. */
export function sendKindOf(key: string): SendKind {
  const colon = key.indexOf(":");
  if (colon === -1) return "payout";
  return kindByPrefix[key.slice(0, colon)] ?? "unknown";
}

/** Who books a mined send's gas other than this pass (as evm_send_gas.booked_by); null: this pass books it. */
export function gasBookedBy(kind: SendKind, succeeded: boolean): string | null {
  switch (kind) {
    case "payout":
      return succeeded ? "payment" : null;
    case "settle_batch":
      return succeeded ? "netting" : null;
    case "sweep":
      return "sweep";
    case "x402_batch":
    case "transfer_authorization":
      return "x402";
    case "approve":
    case "pay_with_authorization":
    case "distribute":
    case "receive_authorization":
    case "unknown":
      return null;
  }
}

/** A mined send whose gas no caller books: handed to the pass's booker. */
export type MinedSend = {
  key: string;
  kind: SendKind;
  /** The transaction mined (the send's first, or a fee bump of it). */
  txHash: Hex;
  blockNumber: bigint;
  reverted: boolean;
  gas: FeePaid;
};

/** Books a mined send's gas; resolves once booked (idempotent: a crash before the send is marked done repeats it). */
export type SendGasBooker = (send: MinedSend) => Promise<void>;

export type SendGasPassResult = {
  /** Sends whose gas this pass handed to the booker. */
  booked: MinedSend[];
  /** Sends mined whose gas their caller books: marked done, nothing booked here. */
  bookedByCaller: number;
  /** Sends not mined yet, or without the confirmations: followed by the next pass. */
  pending: number;
};

/** The most sends one pass looks at (the oldest nonces first): a backlog is worked through pass by pass. */
export const sendGasRowsMax = 100;

export async function sendGasPass(
  state: EvmRailState,
  book: SendGasBooker,
  rowsMax = sendGasRowsMax,
): Promise<SendGasPassResult> {
  const { db } = state.params;
  const result: SendGasPassResult = { booked: [], bookedByCaller: 0, pending: 0 };
  const open = await db.query<{ attempt_id: string; tx_hash: Hex }>(
    `SELECT attempt_id, tx_hash FROM evm_sends s
      WHERE chain_id = $1 AND NOT EXISTS (SELECT 1 FROM evm_send_gas g WHERE g.attempt_id = s.attempt_id)
      ORDER BY nonce, attempt_id LIMIT $2`,
    [state.chainId, rowsMax],
  );
  const wallet = state.account.address.toLowerCase();
  for (const row of open) {
    const receipt = await finalReceiptOf(state.journal, row);
    if (receipt === null) {
      result.pending += 1;
      continue;
    }
    // Another hot wallet's send on this chain and database: its own rail's pass books it, to its own accounts.
    if (receipt.from.toLowerCase() !== wallet) continue;
    const kind = sendKindOf(row.attempt_id);
    const reverted = receipt.status !== "success";
    const gas = gasPaid(receipt);
    const bookedBy = gasBookedBy(kind, !reverted);
    if (bookedBy === null) {
      const mined: MinedSend = {
        key: row.attempt_id,
        kind,
        txHash: receipt.transactionHash,
        blockNumber: receipt.blockNumber,
        reverted,
        gas,
      };
      await book(mined);
      result.booked.push(mined);
    } else result.bookedByCaller += 1;
    await db.query(
      `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (attempt_id) DO NOTHING`,
      [
        row.attempt_id,
        state.chainId,
        receipt.transactionHash.toLowerCase(),
        reverted,
        receipt.gasUsed * receipt.effectiveGasPrice,
        bookedBy ?? "send_gas",
      ],
    );
  }
  return result;
}
