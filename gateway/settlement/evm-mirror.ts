// The ledger mirror of RevenueSplitter's events. Each event becomes ledger transfers, PENDING when the watcher
// first sees it, POSTED once it has the configured confirmations, VOIDED if a reorg takes it away before that
// (and reversed by a compensating transfer if a reorg ever takes away one already posted). Every transfer carries
// the event's tx hash and log index as evidence, and its id is derived from chainId:txHash:logIndex (plus the
// event's generation, which is 0 unless a reorg removed the event and it came back), so repeats change nothing.
//
// Accounts, one set per (chain, splitter, asset), all without balance limits — the chain is the authority and the
// ledger records what it says, in whatever order pending transfers resolve:
// - splitter custody (debit-normal): what the contract holds.
// - one account per split (credit-normal): what the split has received and not yet distributed.
// - one account per recipient of a split (credit-normal): credited in the splitter, not yet withdrawn (pull-based);
//   keyed by (split, recipient index), exactly as the contract's balanceOf(splitId, token, index).
// - batch payouts (debit-normal) and hot-wallet batch outflow (credit-normal): the chain's record of netted
//   payouts that left the hot wallet by settleBatch, a memo pair (see BatchSettled).
//
// Mapping:
// - SplitCreated: no money moves; the watcher's split registry records the recipients.
// - Paid:         custody → split (amount).
// - Distributed:  split → each recipient, a linked chain; shares by splitByBasisPoints (floor, remainder to the
//                 first recipient), the contract's own rule; zero shares are left out.
// - Withdrawn:    recipient → custody (amount).
// - BatchSettled: only when the payer is the gateway's hot wallet (another payer's batch is not our money):
//                 batch payouts → hot-wallet batch outflow (total). The money side — the payable account against
//                 the EVM rail's clearing account — is written by the netting service (gateway/payments/netting.ts)
//                 from the rail's outcome, as a payout's reservation is posted from its outcome; mirroring it here
//                 as well would move the clearing account twice. The memo pair is the chain's confirmation (with
//                 reorg handling) that reconciliation compares with the netting's settle transfers, batch by batch
//                 (same tx hash and log index as evidence). One transfer per batch: the event carries the total
//                 and the batch hash, not the payees (each leg is the token's Transfer log in the same transaction).
// Events for tokens without a configured asset are not mirrored.
import type { Address, Hex } from "viem";
import {
  type Asset,
  type Logger,
  type SplitterEventSink,
  SwitchyardError,
  silentLogger,
  splitByBasisPoints,
  type WatchedEvent,
} from "../../core/index.ts";
import { derivedLedgerId } from "../ids/index.ts";
import {
  accountCodes,
  type HeldLeg,
  holdLegs,
  type Ledger,
  type Leg,
  openAccounts,
  postLegs,
  reverseLegs,
  type TransferEvidence,
  transferCodes,
  voidLegs,
} from "../ledger/index.ts";

/** TigerBeetle `code` of the mirror's accounts and transfers: their entries in the registry (gateway/ledger/codes.ts). */
export const evmMirrorAccountCodes = accountCodes.evmMirror;
export const evmMirrorTransferCodes = transferCodes.evmMirror;

export type EvmMirrorParams = {
  ledger: Ledger;
  chainId: number;
  splitter: Address;
  /** The assets of the tokens to mirror, by token address (any case). */
  tokens: ReadonlyMap<string, Asset>;
  /** The gateway's hot wallet: its settleBatch calls are mirrored. */
  hotWallet: { address: Address };
  /** Where a reorg deeper than the confirmations is reported (a child of the app's logger); silent by default. */
  logger?: Logger;
};

export class EvmMirrorError extends SwitchyardError {
  override name = "EvmMirrorError";
}

type MirrorLeg = { debit: bigint; credit: bigint; amount: bigint; code: number };

/** Ledger account ids of the mirror: derived, so that every process and every restart agrees. */
export function evmMirrorAccounts(params: { chainId: number; splitter: Address }) {
  const base = `${params.chainId}:${params.splitter.toLowerCase()}`;
  return {
    custody: (asset: Asset) => derivedLedgerId(`${base}:${asset.code}`, "evm_splitter_custody"),
    split: (splitId: Hex, asset: Asset) =>
      derivedLedgerId(`${base}:${splitId.toLowerCase()}:${asset.code}`, "evm_split"),
    recipient: (splitId: Hex, index: number, asset: Asset) =>
      derivedLedgerId(`${base}:${splitId.toLowerCase()}:${index}:${asset.code}`, "evm_split_recipient"),
    batchPayouts: (asset: Asset) => derivedLedgerId(`${base}:${asset.code}`, "evm_batch_payouts"),
    batchOutflow: (asset: Asset) => derivedLedgerId(`${base}:${asset.code}`, "evm_batch_outflow"),
  };
}

/** The ids of the ledger transfers the mirror writes for an event: leg `i`, and its post, void or reversal. */
export function evmMirrorTransferId(
  event: Pick<WatchedEvent, "chainId" | "txHash" | "logIndex" | "generation">,
  purpose: "pending" | "post" | "void" | "reversal",
  leg: number,
): bigint {
  return derivedLedgerId(
    `${event.chainId}:${event.txHash.toLowerCase()}:${event.logIndex}#${event.generation}`,
    `evm_mirror_${purpose}:${leg}`,
  );
}

/** The mirror's one explicit state: its parameters, and the account ids derived from them. */
type MirrorState = {
  readonly params: EvmMirrorParams;
  readonly ledger: Ledger;
  readonly logger: Logger;
  readonly ids: ReturnType<typeof evmMirrorAccounts>;
};

export function createEvmMirror(params: EvmMirrorParams): SplitterEventSink {
  const m: MirrorState = {
    params,
    ledger: params.ledger,
    logger: params.logger ?? silentLogger,
    ids: evmMirrorAccounts(params),
  };
  return {
    seen: (watched) => mirrorSeen(m, watched),
    final: (watched) => mirrorFinal(m, watched),
    // Whether it was final is read from the ledger (mirrorRemoved), so a post cut short is undone as what it did.
    removed: (watched) => mirrorRemoved(m, watched),
  };
}

function assetOf(m: MirrorState, token: Address): Asset | null {
  return m.params.tokens.get(token.toLowerCase()) ?? null;
}

/** The ledger legs of an event with their accounts, or null when the event moves no money we mirror. */
function legsOf(
  m: MirrorState,
  watched: WatchedEvent,
): { asset: Asset; legs: MirrorLeg[]; accounts: MirrorAccount[] } | null {
  const event = watched.event;
  if (event.name === "SplitCreated") return null;
  const asset = assetOf(m, event.token);
  if (asset === null) return null;
  const custody: MirrorAccount = { id: m.ids.custody(asset), code: evmMirrorAccountCodes.splitterCustody };
  switch (event.name) {
    case "Paid": {
      const split = { id: m.ids.split(event.splitId, asset), code: evmMirrorAccountCodes.split };
      return {
        asset,
        accounts: [custody, split],
        legs: [
          { debit: custody.id, credit: split.id, amount: event.amount, code: evmMirrorTransferCodes.paid },
        ],
      };
    }
    case "Distributed": {
      if (watched.split === null)
        throw new EvmMirrorError(
          `Distributed ${watched.txHash}:${watched.logIndex} names split ${event.splitId}, whose creation was never seen`,
        );
      const split = { id: m.ids.split(event.splitId, asset), code: evmMirrorAccountCodes.split };
      const shares = splitByBasisPoints(event.amount, watched.split.basisPoints);
      const accounts: MirrorAccount[] = [split];
      const legs: MirrorLeg[] = [];
      shares.forEach((share, index) => {
        if (share === 0n) return;
        const recipient = {
          id: m.ids.recipient(event.splitId, index, asset),
          code: evmMirrorAccountCodes.splitRecipient,
        };
        accounts.push(recipient);
        legs.push({
          debit: split.id,
          credit: recipient.id,
          amount: share,
          code: evmMirrorTransferCodes.distributed,
        });
      });
      return { asset, accounts, legs };
    }
    case "Withdrawn": {
      const recipient = {
        id: m.ids.recipient(event.splitId, Number(event.index), asset),
        code: evmMirrorAccountCodes.splitRecipient,
      };
      return {
        asset,
        accounts: [custody, recipient],
        legs: [
          {
            debit: recipient.id,
            credit: custody.id,
            amount: event.amount,
            code: evmMirrorTransferCodes.withdrawn,
          },
        ],
      };
    }
    case "BatchSettled": {
      if (event.payer.toLowerCase() !== m.params.hotWallet.address.toLowerCase()) return null;
      const payouts = { id: m.ids.batchPayouts(asset), code: evmMirrorAccountCodes.batchPayouts };
      const outflow = { id: m.ids.batchOutflow(asset), code: evmMirrorAccountCodes.batchOutflow };
      return {
        asset,
        accounts: [payouts, outflow],
        legs: [
          {
            debit: payouts.id,
            credit: outflow.id,
            amount: event.total,
            code: evmMirrorTransferCodes.batchSettled,
          },
        ],
      };
    }
  }
}

function evidenceOf(watched: WatchedEvent): TransferEvidence {
  const detail: Record<string, string> = {
    chainId: String(watched.chainId),
    blockNumber: watched.blockNumber.toString(),
    blockHash: watched.blockHash,
    event: watched.event.name,
  };
  if ("splitId" in watched.event) detail.splitId = watched.event.splitId;
  if ("ref" in watched.event) detail.ref = watched.event.ref;
  return { rail: "evm", reference: `${watched.txHash}:${watched.logIndex}`, detail };
}

async function ensureAccounts(
  m: MirrorState,
  asset: Asset,
  accounts: readonly MirrorAccount[],
): Promise<void> {
  await openAccounts(
    m.ledger,
    accounts.map((account) => ({
      id: account.id,
      ledger: asset.ledger,
      code: account.code,
      balance: "none",
    })),
    (account) => `mirror account ${account.id}`,
  );
}

/** Leg `i` of an event as a posting from its debit to its credit account, under the transfer id of `purpose`. */
function ledgerLeg(
  watched: WatchedEvent,
  asset: Asset,
  leg: MirrorLeg,
  i: number,
  purpose: "pending" | "post" | "void" | "reversal",
  evidence: TransferEvidence,
): Leg {
  return {
    posting: {
      debitAccountId: leg.debit,
      creditAccountId: leg.credit,
      amount: leg.amount,
      ledger: asset.ledger,
      code: leg.code,
    },
    transfer: {
      id: evmMirrorTransferId(watched, purpose, i),
      // The pending leg's id, on every transfer after it: what ties a post, void or reversal to its leg.
      ...(purpose === "pending" ? {} : { userData128: evmMirrorTransferId(watched, "pending", i) }),
      evidence,
    },
  };
}

/** Leg `i` as held under its pending id, with the id of its post or void. */
function heldLeg(
  watched: WatchedEvent,
  asset: Asset,
  leg: MirrorLeg,
  i: number,
  purpose: "post" | "void",
  evidence: TransferEvidence,
): HeldLeg {
  const { posting, transfer } = ledgerLeg(watched, asset, leg, i, purpose, evidence);
  return { reservation: { ...posting, pendingId: evmMirrorTransferId(watched, "pending", i) }, transfer };
}

/** First seen: each leg written as a pending transfer (a linked chain), its accounts made sure of first. */
async function mirrorSeen(m: MirrorState, watched: WatchedEvent): Promise<void> {
  const mirrored = legsOf(m, watched);
  if (mirrored === null) return;
  await ensureAccounts(m, mirrored.asset, mirrored.accounts);
  const evidence = evidenceOf(watched);
  await holdLegs(
    m.ledger,
    mirrored.legs.map((leg, i) => ledgerLeg(watched, mirrored.asset, leg, i, "pending", evidence)),
    `mirror ${watched.event.name} ${evidence.reference} as pending`,
  );
}

/** Final: each pending leg posted. */
async function mirrorFinal(m: MirrorState, watched: WatchedEvent): Promise<void> {
  const mirrored = legsOf(m, watched);
  if (mirrored === null) return;
  const evidence = evidenceOf(watched);
  await postLegs(
    m.ledger,
    mirrored.legs.map((leg, i) => heldLeg(watched, mirrored.asset, leg, i, "post", evidence)),
    `post ${watched.event.name} ${evidence.reference}`,
  );
}

/**
 * Removed by a reorg: legs posted reversed by compensating transfers, legs still pending voided. What the ledger holds
 * says which, not the watcher's `wasFinal`: before, a final whose post went through before the event's row moved (a
 * crash between the two) was removed as not final, and its posted legs were "voided" (refused by the ledger, at every
 * retry) instead of reversed. A leg never written (the crash came before it) has nothing to undo.
 */
async function mirrorRemoved(m: MirrorState, watched: WatchedEvent): Promise<void> {
  const mirrored = legsOf(m, watched);
  if (mirrored === null) return;
  const evidence = evidenceOf(watched);
  const legs = mirrored.legs.map((leg, i) => ({
    leg,
    i,
    pendingId: evmMirrorTransferId(watched, "pending", i),
    postId: evmMirrorTransferId(watched, "post", i),
  }));
  const written = new Set(
    (await m.ledger.lookupTransfers(legs.flatMap((l) => [l.pendingId, l.postId]))).map((t) => t.id),
  );
  const posted = legs.filter((l) => written.has(l.postId));
  const pending = legs.filter((l) => !written.has(l.postId) && written.has(l.pendingId));
  if (pending.length > 0)
    await voidLegs(
      m.ledger,
      pending.map(({ leg, i }) => heldLeg(watched, mirrored.asset, leg, i, "void", evidence)),
      `void ${watched.event.name} ${evidence.reference}`,
    );
  if (posted.length === 0) return;
  // A reorg deeper than the confirmations: the posted legs are reversed by compensating transfers.
  m.logger.error({ reference: evidence.reference }, "a reorg removed a final event; reversing its transfers");
  await reverseLegs(
    m.ledger,
    posted.map(({ leg, i }) => ledgerLeg(watched, mirrored.asset, leg, i, "reversal", evidence)),
    evmMirrorTransferCodes.reorgReversal,
    `reverse ${watched.event.name} ${evidence.reference}`,
  );
}

type MirrorAccount = { id: bigint; code: number };
