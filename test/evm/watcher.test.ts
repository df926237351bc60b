// The splitter watcher and its ledger mirror under EVM_CONFIRMATIONS=3, driven poll by poll: pending until the
// event has 3 confirmations, then posted; a reorg (Hardhat snapshot, event, revert, another branch) voids the
// pending transfer; a transaction mined again after a reorg is mirrored anew; a watcher restarted from its cursor
// (and one that crashed between the ledger and its own bookkeeping) misses nothing and doubles nothing.
import {
  type Chain,
  createPublicClient,
  custom,
  encodeFunctionData,
  type Hex,
  type PublicClient,
  parseEventLogs,
  type Transport,
} from "viem";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { createSplitterWatcher, referenceFromId, revenueSplitterAbi } from "../../adapters/evm/index.ts";
import type { WatchedEvent } from "../../core/index.ts";
import { createSplitterMirror } from "../../gateway/app/evm.ts";
import {
  evmMirrorTransferCodes,
  evmMirrorTransferId,
  openSplitterMirror,
} from "../../gateway/settlement/evm.ts";
import { latch } from "../support/latch.ts";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
let splitId: Hex;
const payerIndex = 6;

beforeAll(async () => {
  // No interval blocks: this file mines every block itself.
  gw = await startGateway({ EVM_CONFIRMATIONS: "3", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "0" });
  await gw.watcher.stop(); // this file drives every poll itself
  const [a, b] = gw.chain.accounts.slice(2, 4);
  ({ splitId } = await gw.createSplit([a!.address, b!.address], [7000, 3000]));
  await gw.fund(gw.chain.accounts[payerIndex]!, 100_000_000n);
  await gw.watcher.catchUp(20);
  await gw.chain.networkHelpers.mine(3);
  await gw.watcher.catchUp(20);
});
afterAll(async () => {
  await gw?.app.close();
});

const payer = () => gw.chain.accounts[payerIndex]!;
const custody = () => gw.ledgerAccount(gw.mirrorIds.custody(gw.usdc));

/**
 * `amount` paid into the split (reference `${name}_paid`), then distributed by account 0 (`${name}_distributed`):
 * where the Distributed log is, to read its mirrored legs.
 */
async function paidAndDistributed(splitId: Hex, amount: bigint, name: string) {
  await gw.payDirect(payer(), splitId, amount, referenceFromId(`${name}_paid`));
  const receipt = await gw.send(gw.chain.accounts[0]!, {
    address: gw.chain.contracts.splitter,
    abi: revenueSplitterAbi,
    functionName: "distribute",
    args: [splitId, gw.chain.contracts.testUsd, referenceFromId(`${name}_distributed`)],
  });
  const [distributed] = parseEventLogs({
    abi: revenueSplitterAbi,
    eventName: "Distributed",
    logs: receipt.logs,
  });
  return { txHash: distributed!.transactionHash, logIndex: distributed!.logIndex };
}

function freshWatcher(publicClient: PublicClient<Transport, Chain> = gw.chain.publicClient) {
  return createSplitterMirror({
    db: gw.app.db,
    ledger: gw.app.ledger,
    publicClient,
    splitter: gw.chain.contracts.splitter,
    token: { address: gw.chain.contracts.testUsd, asset: gw.usdc },
    hotWallet: gw.chain.walletClient.account.address,
    confirmations: 3,
    startBlock: 0n,
    pollIntervalMs: 60_000,
  });
}

/**
 * One poll of a new watcher (the gateway's stopped, its lease released) through a node that runs `reorganise` once,
 * between the range's logs and the block read after them. Resolves to whether it ran.
 */
async function pollThroughReorganisation(reorganise: () => Promise<void>): Promise<boolean> {
  let armed = true;
  let logsRead = false;
  const reorganising = createPublicClient({
    chain: gw.chain.chain,
    transport: custom({
      request: async (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_getLogs") logsRead = true;
        if (armed && logsRead && args.method === "eth_getBlockByNumber") {
          armed = false;
          await reorganise();
        }
        return gw.chain.provider.request(args as never);
      },
    }),
  });
  await gw.watcher.stop();
  const watcher = await freshWatcher(reorganising);
  try {
    await watcher.poll();
  } finally {
    await watcher.stop();
  }
  return !armed;
}

describe("confirmations", () => {
  it("an event stays pending until its block has 3 confirmations, then it is posted", async () => {
    const before = await custody();
    const paid = await gw.payDirect(payer(), splitId, 1_000_000n, referenceFromId("conf_1"));
    await gw.watcher.poll(); // 1 confirmation
    let mirrored = await gw.mirrored(paid);
    expect(mirrored.pending?.amount).toBe(1_000_000n);
    expect(mirrored.post).toBeNull();
    expect((await custody()).debitsPending - before.debitsPending).toBe(1_000_000n);
    expect((await gw.eventRow(paid.txHash, paid.logIndex))?.status).toBe("pending");

    await gw.chain.networkHelpers.mine(1);
    await gw.watcher.poll(); // 2 confirmations
    expect((await gw.mirrored(paid)).post).toBeNull();

    await gw.chain.networkHelpers.mine(1);
    await gw.watcher.poll(); // 3 confirmations: final
    mirrored = await gw.mirrored(paid);
    expect(mirrored.post?.amount).toBe(1_000_000n);
    expect(mirrored.post?.evidence?.reference).toBe(`${paid.txHash}:${paid.logIndex}`);
    const after = await custody();
    expect(after.debitsPending).toBe(before.debitsPending);
    expect(after.debitsPosted - before.debitsPosted).toBe(1_000_000n);
    expect((await gw.eventRow(paid.txHash, paid.logIndex))?.status).toBe("posted");
  });
});

describe("reorgs", () => {
  it("an event that disappears before finality has its pending transfer voided; the new branch is mirrored", async () => {
    const before = await custody();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const lost = await gw.payDirect(payer(), splitId, 2_000_000n, referenceFromId("reorg_lost"));
    await gw.watcher.poll();
    expect((await gw.mirrored(lost)).pending?.amount).toBe(2_000_000n);

    // Back to before the payment, and another branch: a different payment, then more blocks.
    await snapshot.restore();
    const kept = await gw.payDirect(payer(), splitId, 7n, referenceFromId("reorg_kept"));
    await gw.chain.networkHelpers.mine(1);
    const result = await gw.watcher.poll();
    expect(result.removed).toBe(1);

    const gone = await gw.mirrored(lost);
    expect(gone.voided?.amount).toBe(2_000_000n);
    expect(gone.post).toBeNull();
    expect((await gw.eventRow(lost.txHash, lost.logIndex))?.status).toBe("removed");
    expect((await gw.mirrored(kept)).pending?.amount).toBe(7n);
    expect((await custody()).debitsPending - before.debitsPending).toBe(7n);

    await gw.chain.networkHelpers.mine(2);
    await gw.watcher.poll();
    expect((await gw.mirrored(kept)).post?.amount).toBe(7n);
    expect((await gw.mirrored(lost)).post).toBeNull();
    const after = await custody();
    expect(after.debitsPending).toBe(before.debitsPending);
    expect(after.debitsPosted - before.debitsPosted).toBe(7n);
  });

  it("a transaction mined again in another block after a reorg is mirrored anew (next generation)", async () => {
    const account = payer();
    const request = await gw.chain.walletClient.prepareTransactionRequest({
      account,
      chain: gw.chain.chain,
      to: gw.chain.contracts.splitter,
      data: encodeFunctionData({
        abi: revenueSplitterAbi,
        functionName: "pay",
        args: [splitId, gw.chain.contracts.testUsd, 5_000n, referenceFromId("again")],
      }),
    });
    const raw = await account.signTransaction!(request as never);
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const hash = await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    const receipt = await gw.chain.publicClient.waitForTransactionReceipt({ hash });
    const logIndex = receipt.logs.find(
      (log) => log.address.toLowerCase() === gw.chain.contracts.splitter.toLowerCase(),
    )!.logIndex;
    await gw.watcher.poll();
    expect((await gw.mirrored({ txHash: hash, logIndex })).pending?.amount).toBe(5_000n);

    await snapshot.restore();
    await gw.chain.networkHelpers.mine(1); // the same transaction lands one block later than before
    await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    const again = await gw.chain.publicClient.waitForTransactionReceipt({ hash });
    expect(again.blockNumber).toBe(receipt.blockNumber + 1n);
    await gw.watcher.poll();

    const first = await gw.mirrored({ txHash: hash, logIndex, generation: 0 });
    expect(first.voided?.amount).toBe(5_000n);
    const second = await gw.mirrored({ txHash: hash, logIndex, generation: 1 });
    expect(second.pending?.amount).toBe(5_000n);
    expect((await gw.eventRow(hash, logIndex))?.generation).toBe(1);
    await gw.chain.networkHelpers.mine(3);
    await gw.watcher.poll();
    expect((await gw.mirrored({ txHash: hash, logIndex, generation: 1 })).post?.amount).toBe(5_000n);
  });
});

describe("a reorg while a range is read", () => {
  it("an event read from the branch the chain left is never mirrored: the range is read again", async () => {
    const before = await custody();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const lost = await gw.payDirect(payer(), splitId, 4_000n, referenceFromId("mid_read_lost"));
    // A node that reorganises between the range's logs and its last block: the payment's block is replaced by an
    // empty one of the same height.
    expect(
      await pollThroughReorganisation(async () => {
        await snapshot.restore();
        await gw.chain.networkHelpers.mine(1);
      }),
    ).toBe(true);
    await gw.chain.networkHelpers.mine(3);
    await gw.watcher.poll();
    await gw.watcher.poll();
    // Before: stored with the orphaned block's hash while its height was remembered by the new one, never removed,
    // and posted three blocks later: custody credited for a payment the chain does not have.
    const mirrored = await gw.mirrored(lost);
    expect(mirrored.pending).toBeNull();
    expect(mirrored.post).toBeNull();
    const after = await custody();
    expect(after.debitsPosted - before.debitsPosted).toBe(0n);
    expect(after.debitsPending).toBe(before.debitsPending);
  });
});

describe("a reorg while a range with no log is read", () => {
  it("a payment of the branch the chain moved to is read again, not passed over", async () => {
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    await gw.chain.networkHelpers.mine(1); // the branch read: a block with nothing of the splitter's
    let kept: Awaited<ReturnType<Gateway["payDirect"]>> | undefined;
    expect(
      await pollThroughReorganisation(async () => {
        // The same height again, now holding a payment.
        await snapshot.restore();
        kept = await gw.payDirect(payer(), splitId, 6_000n, referenceFromId("mid_read_kept"));
      }),
    ).toBe(true);
    await gw.chain.networkHelpers.mine(3);
    await gw.watcher.catchUp(20);
    // Before: the range passed with no log, its last block remembered by the new branch's hash: never read again.
    expect((await gw.mirrored(kept!)).post?.amount).toBe(6_000n);
  });
});

describe("a reorg deeper than the confirmations", () => {
  it("reverses a posted event with a compensating transfer (and says so)", async () => {
    const before = await custody();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const lost = await gw.payDirect(payer(), splitId, 3_000n, referenceFromId("deep_lost"));
    await gw.chain.networkHelpers.mine(2);
    await gw.watcher.poll();
    expect((await gw.mirrored(lost)).post?.amount).toBe(3_000n);

    await snapshot.restore();
    await gw.payDirect(payer(), splitId, 1n, referenceFromId("deep_kept"));
    await gw.chain.networkHelpers.mine(4);
    const result = await gw.watcher.poll();
    expect(result.removed).toBe(1);
    const [reversal] = await gw.app.ledger.lookupTransfers([
      evmMirrorTransferId({ chainId: gw.chain.chain.id, ...lost, generation: 0 }, "reversal", 0),
    ]);
    expect(reversal).toMatchObject({
      amount: 3_000n,
      code: evmMirrorTransferCodes.reorgReversal,
      debitAccountId: gw.mirrorIds.split(splitId, gw.usdc),
      creditAccountId: gw.mirrorIds.custody(gw.usdc),
    });
    const after = await custody();
    // Net of the reversal, custody holds only what the surviving branch paid.
    expect(after.debitsPosted - after.creditsPosted - (before.debitsPosted - before.creditsPosted)).toBe(1n);
  });
});

describe("a node whose head lags behind a block already read", () => {
  it("undoes nothing: a posted event stays posted, nothing reversed, and the poll after it changes nothing", async () => {
    await gw.watcher.catchUp(20);
    const paid = await gw.payDirect(payer(), splitId, 4_000n, referenceFromId("lagging_node"));
    for (let i = 0; i < 3; i++) {
      await gw.watcher.poll(); // each block read and kept: the event's, then two more
      if (i < 2) await gw.chain.networkHelpers.mine(1);
    }
    expect((await gw.mirrored(paid)).post?.amount).toBe(4_000n);
    const head = await gw.chain.publicClient.getBlockNumber();
    // An endpoint behind a load balancer answering from a node 3 blocks behind: `latest` is block head − 3, below the
    // event's block; every block it has is the chain's own.
    const lagging = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown[] }) => {
          if (args.method === "eth_getBlockByNumber" && args.params?.[0] === "latest")
            return gw.chain.provider.request({
              method: "eth_getBlockByNumber",
              params: [`0x${(head - 3n).toString(16)}`, args.params[1] ?? false],
            } as never);
          return gw.chain.provider.request(args as never);
        },
      }),
    });
    await gw.watcher.stop();
    const watcher = await freshWatcher(lagging);
    try {
      const result = await watcher.poll();
      // Before: the blocks above the lagging head counted as forked, and the posted event was reversed.
      expect(result.removed).toBe(0);
    } finally {
      await watcher.stop();
    }
    expect((await gw.eventRow(paid.txHash, paid.logIndex))?.status).toBe("posted");
    const [reversal] = await gw.app.ledger.lookupTransfers([
      evmMirrorTransferId({ chainId: gw.chain.chain.id, ...paid, generation: 0 }, "reversal", 0),
    ]);
    expect(reversal).toBeUndefined();
    // The node caught up: the same chain, nothing to undo.
    expect((await gw.watcher.poll()).removed).toBe(0);
    expect((await gw.mirrored(paid)).post?.amount).toBe(4_000n);
  });
});

describe("restart", () => {
  it("a new watcher resumes from the persisted cursor: events while it was down are mirrored once", async () => {
    await gw.watcher.catchUp(20);
    const cursor = await gw.watcher.nextBlock();
    const before = await custody();
    // The gateway's watcher is down (its lease released); money keeps coming in.
    await gw.watcher.stop();
    const one = await gw.payDirect(payer(), splitId, 11n, referenceFromId("down_1"));
    const two = await gw.payDirect(payer(), splitId, 22n, referenceFromId("down_2"));
    await gw.chain.networkHelpers.mine(3);

    const restarted = await freshWatcher();
    onTestFinished(() => restarted.stop());
    expect(await restarted.nextBlock()).toBe(cursor);
    await restarted.catchUp(20);
    for (const [event, amount] of [
      [one, 11n],
      [two, 22n],
    ] as const) {
      const mirrored = await gw.mirrored(event);
      expect(mirrored.pending?.amount).toBe(amount);
      expect(mirrored.post?.amount).toBe(amount);
    }
    const after = await custody();
    expect(after.debitsPosted - before.debitsPosted).toBe(33n);
    expect(after.debitsPending).toBe(before.debitsPending);
  });

  it("a crash between the ledger and the watcher's bookkeeping repeats nothing", async () => {
    await gw.watcher.catchUp(20);
    // Its last poll: two payments of its own, mirrored and final.
    const first = await gw.payDirect(payer(), splitId, 12n, referenceFromId("crash_1"));
    await gw.payDirect(payer(), splitId, 13n, referenceFromId("crash_2"));
    await gw.chain.networkHelpers.mine(3);
    await gw.watcher.catchUp(20);
    const transfers = await gw.ledgerTransferCount();
    const balances = await custody();
    const [events] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM evm_watch_events",
    );
    // As if the process died after writing the ledger but before moving its rows and its cursor: every row back to
    // seen, the cursor back to the start of that poll's range. (Not to block 0: a test that moved the cursor past a
    // split's creation, as EVM_SPLITTER_START_BLOCK does, leaves logs behind it that no poll ever read.)
    await gw.app.db.query("UPDATE evm_watch_events SET status = 'seen' WHERE status = 'posted'");
    await gw.app.db.query("UPDATE evm_watch_cursors SET next_block = $1", [first.blockNumber]);
    await gw.watcher.stop();

    const restarted = await freshWatcher();
    onTestFinished(() => restarted.stop());
    await restarted.catchUp(50);
    expect(await gw.ledgerTransferCount()).toBe(transfers);
    const [eventsAfter] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM evm_watch_events",
    );
    expect(eventsAfter?.count).toBe(events?.count);
    const [open] = await gw.app.db.query<{ count: bigint }>(
      "SELECT count(*) AS count FROM evm_watch_events WHERE status IN ('seen', 'pending')",
    );
    expect(open?.count).toBe(0n);
    expect(await custody()).toEqual(balances);
  });
});

describe("a split created before the watcher's first block", () => {
  it("is read from its SplitCreated log, so its Distributed is mirrored to each recipient's share", async () => {
    await gw.watcher.catchUp(20);
    const [c, d] = gw.chain.accounts.slice(4, 6);
    const late = await gw.createSplit([c!.address, d!.address], [6000, 4000]);
    // The watcher goes on from after the split's creation, as with EVM_SPLITTER_START_BLOCK past it.
    const head = await gw.chain.publicClient.getBlockNumber();
    await gw.app.db.query("UPDATE evm_watch_cursors SET next_block = $1", [head + 1n]);
    const coordinates = await paidAndDistributed(late.splitId, 10_000n, "late");
    await gw.chain.networkHelpers.mine(3);
    await gw.watcher.catchUp(20);

    const legs = await Promise.all(late.basisPoints.map((_, leg) => gw.mirrored(coordinates, leg)));
    // 10,000 units split 60/40 in the contract's recipient order: each share is its basis points.
    expect(legs.map((leg) => leg.post?.amount)).toEqual(late.basisPoints.map((bp) => BigInt(bp)));
    const [registered] = await gw.app.db.query<{ basis_points: number[] }>(
      "SELECT basis_points FROM evm_splits WHERE split_id = $1",
      [late.splitId.toLowerCase()],
    );
    expect(registered?.basis_points).toEqual([...late.basisPoints]);
  });
});

describe("a node that refuses a getLogs call spanning more than 50 blocks (a provider's cap)", () => {
  it("is read in halves: the range read, and an earlier split's SplitCreated found, its Distributed mirrored", async () => {
    await gw.watcher.catchUp(20);
    const [c, d] = gw.chain.accounts.slice(4, 6);
    await gw.chain.networkHelpers.mine(60); // the search for the split's creation spans more than the cap too
    const early = await gw.createSplit([c!.address, d!.address], [2500, 7500]);
    const created = await gw.chain.publicClient.getBlockNumber();
    await gw.chain.networkHelpers.mine(60);
    const head = await gw.chain.publicClient.getBlockNumber();
    let refused = 0;
    const capped = createPublicClient({
      chain: gw.chain.chain,
      transport: custom(
        {
          request: async (args: { method: string; params?: unknown[] }) => {
            if (args.method === "eth_getLogs") {
              const filter = args.params?.[0] as { fromBlock: Hex; toBlock: Hex | "latest" };
              const to = filter.toBlock === "latest" ? head + 1_000n : BigInt(filter.toBlock);
              if (to - BigInt(filter.fromBlock) >= 50n) {
                refused += 1;
                throw new Error("block range is too large (the most is 50 blocks)");
              }
            }
            return gw.chain.provider.request(args as never);
          },
        },
        { retryCount: 0 },
      ),
    });
    await gw.watcher.stop();
    // The watcher goes on from after the split's creation (EVM_SPLITTER_START_BLOCK past it), over a range longer
    // than the node's cap.
    await gw.app.db.query("UPDATE evm_watch_cursors SET next_block = $1", [created + 1n]);
    const coordinates = await paidAndDistributed(early.splitId, 20_000n, "capped");
    await gw.chain.networkHelpers.mine(3);
    const watcher = await freshWatcher(capped);
    try {
      // Before: every poll failed on the range (and on the search for the split from block 0), the cursor stuck.
      await watcher.catchUp(20);
    } finally {
      await watcher.stop();
    }
    expect(refused).toBeGreaterThan(0);
    const legs = await Promise.all(early.basisPoints.map((_, leg) => gw.mirrored(coordinates, leg)));
    // 20,000 units in the contract's recipient order: each share twice its basis points.
    expect(legs.map((leg) => leg.post?.amount)).toEqual(early.basisPoints.map((bp) => BigInt(bp) * 2n));
  });
});

describe("two watchers on one database", () => {
  it("one follows the splitter; the other stands by, reading nothing, until the first stops", async () => {
    await gw.watcher.catchUp(20); // holds the lease
    const other = await freshWatcher();
    onTestFinished(() => other.stop());
    const paid = await gw.payDirect(payer(), splitId, 44n, referenceFromId("standby"));
    await gw.chain.networkHelpers.mine(3);

    const standing = await other.poll();
    expect(standing).toMatchObject({ standby: true, read: 0, seen: 0, finalized: 0 });
    expect(await gw.eventRow(paid.txHash, paid.logIndex)).toBeNull();

    await gw.watcher.stop(); // releases the lease: the other takes over at its next poll
    const following = await other.catchUp(20);
    expect(following.standby).toBe(false);
    expect((await gw.mirrored(paid)).post?.amount).toBe(44n);
    expect((await gw.watcher.poll()).standby).toBe(true);
  });
});

describe("a poll that outlasts its lease", () => {
  it("stops before its next event once another watcher has taken the lease, instead of applying events beside it", async () => {
    await gw.watcher.catchUp(20);
    await gw.watcher.stop(); // its lease released
    const first = await gw.payDirect(payer(), splitId, 45n, referenceFromId("lease_first"));
    const second = await gw.payDirect(payer(), splitId, 46n, referenceFromId("lease_second"));
    await gw.chain.networkHelpers.mine(3);
    const leaseMs = 400;
    // The gateway's own ledger mirror behind both: the events this test marks final are in the ledger too, as the
    // watcher's rows say (a crash test that re-reads every row must find nothing left to book).
    const mirror = await openSplitterMirror({
      ledger: gw.app.ledger,
      chainId: gw.chain.chain.id,
      splitter: gw.chain.contracts.splitter,
      token: { address: gw.chain.contracts.testUsd, asset: gw.usdc },
      hotWallet: gw.chain.walletClient.account.address,
    });
    /** A watcher whose sink records the events it is handed as final; `slow` holds the first of them until released. */
    const watcherWith = (finals: string[], slow?: { done: Promise<void>; reached: () => void }) =>
      createSplitterWatcher({
        db: gw.app.db,
        publicClient: gw.chain.publicClient,
        splitter: gw.chain.contracts.splitter,
        startBlock: 0n,
        confirmations: 3,
        pollIntervalMs: 60_000,
        blockRangeMax: 1_000n,
        eventsPerPollMax: 1_000,
        leaseMs,
        sink: {
          seen: (event) => mirror.seen(event),
          async final(event: WatchedEvent) {
            finals.push(event.txHash);
            if (slow !== undefined && finals.length === 1) {
              slow.reached();
              await slow.done;
            }
            await mirror.final(event);
          },
          removed: (event, wasFinal) => mirror.removed(event, wasFinal),
        },
      });
    const held = latch();
    const reached = latch();
    const ofSlow: string[] = [];
    const ofOther: string[] = [];
    const slow = watcherWith(ofSlow, { done: held.done, reached: reached.release });
    const other = watcherWith(ofOther);
    try {
      const slowPoll = slow.poll();
      await reached.done; // the slow watcher is in its first event's final
      await new Promise((resolve) => setTimeout(resolve, leaseMs + 100)); // past its lease
      const taken = await other.poll();
      expect(taken.standby).toBe(false);
      expect(ofOther).toEqual(expect.arrayContaining([first.txHash, second.txHash]));
      held.release();
      // Before: it went on to the second event's final, beside the watcher that holds the lease.
      await expect(slowPoll).rejects.toThrow(/took the lease/);
      expect(ofSlow).toHaveLength(1);
      expect((await gw.mirrored(first)).post?.amount).toBe(45n);
      expect((await gw.mirrored(second)).post?.amount).toBe(46n);
    } finally {
      held.release();
      await slow.stop();
      await other.stop();
    }
  });
});
