// The mirror's mapping on a real ledger (PGlite in memory), with events as the watcher hands them over.
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, type SplitterEvent, splitByBasisPoints, type WatchedEvent } from "../../core/index.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { createLedger, type Ledger, TransferFlags } from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import {
  createEvmMirror,
  evmMirrorAccounts,
  evmMirrorTransferCodes,
  evmMirrorTransferId,
} from "./evm-mirror.ts";

const chainId = 31337;
const splitter: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const token: Address = "0x00000000000000000000000000000000000000aa";
const hotWallet: Address = "0x00000000000000000000000000000000000000bb";
const splitId: Hex = `0x${"12".repeat(32)}`;
const split = {
  recipients: [
    "0x0000000000000000000000000000000000000001",
    "0x0000000000000000000000000000000000000002",
    "0x0000000000000000000000000000000000000003",
  ] as Address[],
  basisPoints: [3333, 3333, 3334],
};
const clearing = 999_001n;
const ids = evmMirrorAccounts({ chainId, splitter });

let db: Db;
let ledger: Ledger;
let sequence = 0;

function watched(event: SplitterEvent): WatchedEvent {
  sequence += 1;
  return {
    chainId,
    contract: splitter,
    txHash: `0x${sequence.toString(16).padStart(64, "0")}`,
    logIndex: 0,
    blockNumber: BigInt(sequence),
    blockHash: `0x${(sequence + 1000).toString(16).padStart(64, "0")}`,
    generation: 0,
    event,
    split,
  };
}

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [
    { namespace: "ledger", directory: new URL("../ledger/migrations", import.meta.url).pathname },
  ]);
  ledger = createLedger({ ...gatewayLedgerParams, db, limits: { expiryIntervalMs: 0 } });
  await ledger.createAccounts([{ id: clearing, ledger: assets.USDC.ledger, code: 10 }]);
});
afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const mirror = () =>
  createEvmMirror({
    ledger,
    chainId,
    splitter,
    tokens: new Map([[token.toLowerCase(), assets.USDC]]),
    hotWallet: { address: hotWallet },
  });

describe("the splitter mirror", () => {
  it("Distributed credits each recipient its floor share, the remainder to the first, in one linked chain", async () => {
    const sink = mirror();
    const paid = watched({
      name: "Paid",
      splitId,
      token,
      payer: hotWallet,
      amount: 10_001n,
      ref: `0x${"00".repeat(32)}`,
    });
    await sink.seen(paid);
    await sink.final(paid);
    const distributed = watched({
      name: "Distributed",
      splitId,
      token,
      distributor: hotWallet,
      amount: 10_001n,
      ref: `0x${"00".repeat(32)}`,
    });
    await sink.seen(distributed);
    await sink.seen(distributed); // a repeat changes nothing
    const shares = splitByBasisPoints(10_001n, split.basisPoints);
    expect(shares).toEqual([3334n, 3333n, 3334n]); // floors 3333, 3333, 3334; remainder 1 to the first
    const pendings = await ledger.lookupTransfers(
      shares.map((_, i) => evmMirrorTransferId(distributed, "pending", i)),
    );
    expect(pendings.map((t) => t.amount)).toEqual(shares);
    expect(pendings.map((t) => t.flags)).toEqual([
      TransferFlags.pending | TransferFlags.linked,
      TransferFlags.pending | TransferFlags.linked,
      TransferFlags.pending,
    ]);
    expect(pendings.every((t) => t.code === evmMirrorTransferCodes.distributed)).toBe(true);
    await sink.final(distributed);
    await sink.final(distributed);
    const [splitAccount, ...recipients] = await ledger.lookupAccounts([
      ids.split(splitId, assets.USDC),
      ...shares.map((_, i) => ids.recipient(splitId, i, assets.USDC)),
    ]);
    expect(splitAccount!.creditsPosted - splitAccount!.debitsPosted).toBe(0n);
    expect(recipients.map((r) => r.creditsPosted)).toEqual(shares);
  });

  it("a removed pending event is voided, and voiding twice is harmless", async () => {
    const sink = mirror();
    const paid = watched({
      name: "Paid",
      splitId,
      token,
      payer: hotWallet,
      amount: 50n,
      ref: `0x${"01".repeat(32)}`,
    });
    await sink.seen(paid);
    await sink.removed(paid, false);
    await sink.removed(paid, false);
    const [voided] = await ledger.lookupTransfers([evmMirrorTransferId(paid, "void", 0)]);
    expect(voided?.flags).toBe(TransferFlags.voidPendingTransfer);
    const never = watched({
      name: "Paid",
      splitId,
      token,
      payer: hotWallet,
      amount: 60n,
      ref: `0x${"02".repeat(32)}`,
    });
    await sink.removed(never, false); // never written (a crash before `seen`): nothing to void
    expect(await ledger.lookupTransfers([evmMirrorTransferId(never, "void", 0)])).toEqual([]);
  });

  it("reverses a posted event the watcher hands over as not final (its row had not moved), and voids one only seen", async () => {
    const sink = mirror();
    const [posted, seen] = [7, 8].map((n) =>
      watched({
        name: "Paid",
        splitId,
        token,
        payer: hotWallet,
        amount: BigInt(n * 10),
        ref: `0x${String(n).padStart(2, "0").repeat(32)}`,
      }),
    );
    await sink.seen(posted!);
    await sink.final(posted!);
    await sink.seen(seen!);
    // Before: the posted legs were voided, which the ledger refuses at every try, and never reversed.
    await sink.removed(posted!, false);
    await sink.removed(seen!, true);
    const [reversal, voidOfPosted, reversalOfSeen, voided] = await Promise.all(
      [
        evmMirrorTransferId(posted!, "reversal", 0),
        evmMirrorTransferId(posted!, "void", 0),
        evmMirrorTransferId(seen!, "reversal", 0),
        evmMirrorTransferId(seen!, "void", 0),
      ].map(async (id) => (await ledger.lookupTransfers([id]))[0]),
    );
    expect(reversal?.amount).toBe(70n);
    expect([voidOfPosted, reversalOfSeen]).toEqual([undefined, undefined]);
    expect(voided?.flags).toBe(TransferFlags.voidPendingTransfer);
  });

  it("mirrors nothing for other tokens, nor for batches another payer settled", async () => {
    const sink = mirror();
    const foreignToken = watched({
      name: "Paid",
      splitId,
      token: "0x00000000000000000000000000000000000000cc",
      payer: hotWallet,
      amount: 5n,
      ref: `0x${"03".repeat(32)}`,
    });
    const foreignBatch = watched({
      name: "BatchSettled",
      token,
      payer: "0x00000000000000000000000000000000000000dd",
      ref: `0x${"04".repeat(32)}`,
      payeeCount: 2n,
      total: 7n,
      batchHash: `0x${"05".repeat(32)}`,
    });
    for (const event of [foreignToken, foreignBatch]) {
      await sink.seen(event);
      expect(await ledger.lookupTransfers([evmMirrorTransferId(event, "pending", 0)])).toEqual([]);
    }
  });

  it("a final event a reorg removed is reversed, and that is reported through the mirror's logger", async () => {
    const { logger, lines } = recordingLogger();
    const sink = createEvmMirror({
      ledger,
      chainId,
      splitter,
      tokens: new Map([[token.toLowerCase(), assets.USDC]]),
      hotWallet: { address: hotWallet },
      logger,
    });
    const paid = watched({
      name: "Paid",
      splitId,
      token,
      payer: hotWallet,
      amount: 70n,
      ref: `0x${"06".repeat(32)}`,
    });
    await sink.seen(paid);
    await sink.final(paid);
    await sink.removed(paid, true);
    const [reversal] = await ledger.lookupTransfers([evmMirrorTransferId(paid, "reversal", 0)]);
    expect(reversal?.amount).toBe(70n);
    expect(reversal?.code).toBe(evmMirrorTransferCodes.reorgReversal);
    expect(
      lines.filter((line) => line.level === "error").map(({ fields, message }) => ({ fields, message })),
    ).toEqual([
      {
        fields: { reference: `${paid.txHash}:0` },
        message: "a reorg removed a final event; reversing its transfers",
      },
    ]);
  });
});
