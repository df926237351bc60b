// The hot wallet's nonces come from the database, so that several gateway processes can share one wallet: two
// rails over the same database and wallet ("two processes") pay at once and every transaction lands, each with its
// own nonce. And a transaction not mined in time is replaced when its attempt is executed again: the same call,
// the same nonce, both fees bumped by at least 12.5% within the cap (to the cap when that is still the 10% a node
// asks; left as it is, said once, when not); the replacement is the one mined and the payout's evidence. The node is
// asked nothing while the nonce row's transaction is open (a slow node would hold the row's lock).
import {
  type Address,
  createPublicClient,
  createWalletClient,
  custom,
  encodeFunctionData,
  type Hex,
  keccak256,
  parseTransaction,
  recoverTransactionAddress,
  serializeTransaction,
  stringToHex,
  type TransactionSerializable,
  type WalletClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chainRefused } from "../../adapters/evm/errors.ts";
import { readBaseFee } from "../../adapters/evm/gas.ts";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { revertName } from "../../adapters/evm/reverts.ts";
import {
  confirmedNonceOf,
  createSendJournal,
  finalReceiptOf,
  hashesOfSend,
  keepOpenSends,
  neverMinedDepthExtra,
  receiptOf,
  type SendJournal,
  sendFateOf,
  sendHashesOf,
  sendOnce,
  sendWithinQueue,
  stalledAfterMsLeast,
} from "../../adapters/evm/send-journal.ts";
import type { Db, Logger, OutgoingAttempt } from "../../core/index.ts";
import { recoverOpenAttempts } from "../../gateway/payments/index.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

const setAutomine = (on: boolean) =>
  gw.chain.provider.request({ method: "evm_setAutomine", params: [on] } as never);

const payout = (id: string, amount: bigint): OutgoingAttempt => ({
  id,
  paymentId: `pay_${id}`,
  tenantId: "ten_test",
  amount,
  destination: { kind: "evm_address", address: gw.chain.accounts[8]!.address },
  feeMax: 1_000_000n,
});

describe("nonces held in the database", () => {
  it("two processes on one hot wallet pay at once: every payout lands, each transaction with its own nonce", async () => {
    const other = anotherProcessRail(gw);
    const ids = Array.from({ length: 6 }, (_, i) => [`att_nonce_a${i}`, `att_nonce_b${i}`]).flat();
    const outcomes = await Promise.all(
      ids.map((id, i) => (i % 2 === 0 ? gw.rail : other).execute(payout(id, 1_000n + BigInt(i)))),
    );
    expect(outcomes.map((outcome) => outcome.status)).toEqual(ids.map(() => "succeeded"));
    const rows = await gw.app.db.query<{ nonce: number }>(
      "SELECT nonce FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [ids],
    );
    const nonces = rows.map((row) => Number(row.nonce));
    expect(new Set(nonces).size).toBe(ids.length);
    expect(nonces.at(-1)! - nonces[0]!).toBe(ids.length - 1); // consecutive: no gap left behind
    const [sequence] = await gw.app.db.query<{ next_nonce: bigint }>(
      "SELECT next_nonce FROM evm_nonces WHERE chain_id = $1 AND wallet = $2",
      [gw.chain.chain.id, gw.chain.walletClient.account.address.toLowerCase()],
    );
    expect(Number(sequence?.next_nonce)).toBe(nonces.at(-1)! + 1);
  });
});

/**
 * The gateway's database and chain, watched: every JSON-RPC method the rail's clients ask while one of the rail's
 * database transactions is open, and how many it opened.
 */
function watchedClients() {
  const watched = { transactionsOpened: 0, open: 0, askedInside: [] as string[] };
  const base = gw.app.db;
  const db: Db = {
    ...base,
    transaction: (fn) =>
      base.transaction(async (tx) => {
        watched.transactionsOpened += 1;
        watched.open += 1;
        try {
          return await fn(tx);
        } finally {
          watched.open -= 1;
        }
      }),
  };
  const transport = custom({
    request: (args: { method: string; params?: unknown }) => {
      if (watched.open > 0) watched.askedInside.push(args.method);
      return gw.chain.provider.request(args as never);
    },
  });
  const { chain } = gw.chain;
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 50 });
  const walletClient = createWalletClient({ chain, transport, account: gw.chain.walletClient.account });
  return { watched, clients: { db, publicClient, walletClient } };
}

describe("the nonce row's transaction", () => {
  it("asks the node nothing while open: the send is signed with the wallet's key and the chain id read before", async () => {
    const { watched, clients } = watchedClients();
    const attempt = payout("att_no_rpc_in_tx", 1_234n);
    expect(await anotherProcessRail(gw, clients).execute(attempt)).toMatchObject({ status: "succeeded" });
    expect(watched.transactionsOpened).toBeGreaterThan(0);
    expect(watched.askedInside).toEqual([]);
    const [sent] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number }>(
      "SELECT tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
      [attempt.id],
    );
    const signed = parseTransaction(sent!.raw_tx);
    expect(sent!.tx_hash).toBe(keccak256(sent!.raw_tx));
    expect(signed.chainId).toBe(gw.chain.chain.id);
    expect(signed.nonce).toBe(Number(sent!.nonce));
    // The same bytes viem's walletClient.signTransaction gives (which asks the node for the chain id first).
    const { r: _r, s: _s, v: _v, yParity: _yParity, ...unsigned } = signed;
    expect(await gw.chain.walletClient.signTransaction(unsigned as never)).toBe(sent!.raw_tx);
    const mined = await gw.chain.publicClient.getTransaction({ hash: sent!.tx_hash });
    expect(mined.from.toLowerCase()).toBe(gw.chain.walletClient.account.address.toLowerCase());
  });
});

describe("a stuck transaction", () => {
  it("is replaced when its attempt runs again after replaceAfterMs: same nonce, fees bumped ≥ 12.5%, the replacement mined", async () => {
    const rail = anotherProcessRail(gw, { receiptTimeoutMs: 300, replaceAfterMs: 0 });
    const attempt = payout("att_stuck", 4_242n);
    await setAutomine(false);
    let first: { tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number } | undefined;
    try {
      expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
      [first] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number }>(
        "SELECT tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
        [attempt.id],
      );
      // Run again (recovery does): not mined after replaceAfterMs, so it is replaced.
      expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
    } finally {
      await setAutomine(true);
    }
    const [second] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number }>(
      "SELECT tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
      [attempt.id],
    );
    expect(second!.tx_hash).not.toBe(first!.tx_hash);
    expect(Number(second!.nonce)).toBe(Number(first!.nonce));
    const [before, after] = [parseTransaction(first!.raw_tx), parseTransaction(second!.raw_tx)];
    expect(after.nonce).toBe(before.nonce);
    expect(after.to).toBe(before.to);
    expect(after.data).toBe(before.data);
    expect(after.maxFeePerGas! * 8n).toBeGreaterThanOrEqual(before.maxFeePerGas! * 9n);
    expect(after.maxPriorityFeePerGas! * 8n).toBeGreaterThanOrEqual(before.maxPriorityFeePerGas! * 9n);
    expect(after.maxFeePerGas!).toBeLessThanOrEqual(200_000_000_000n);
    const replaced = await gw.app.db.query("SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1", [
      attempt.id,
    ]);
    expect(replaced).toEqual([{ tx_hash: first!.tx_hash }]);

    await gw.chain.provider.request({ method: "evm_mine", params: [] } as never);
    const outcome = await rail.execute(attempt);
    expect(outcome).toMatchObject({ status: "succeeded", evidence: { txHash: second!.tx_hash } });
    await expect(gw.chain.publicClient.getTransactionReceipt({ hash: first!.tx_hash })).rejects.toThrow();
  });
});

describe("a stuck transaction near the gas cap", () => {
  /** The gateway's journal with a cap of `maxFeeWei`, every send due at once, logging into `logger`. */
  const cappedJournal = (maxFeeWei: bigint, logger: Logger) =>
    createSendJournal({
      db: gw.app.db,
      publicClient: gw.chain.publicClient,
      walletClient: gw.chain.walletClient,
      confirmations: 1,
      receiptTimeoutMs: 30_000,
      gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei },
      replaceAfterMs: 0,
      logger,
    });
  /** Approving nothing to a payee: a send of the wallet that harms nothing, under `key`. */
  const approveNothing = (journal: SendJournal, key: string) =>
    sendOnce(journal, key, async () => ({
      to: gw.chain.contracts.testUsd,
      data: encodeFunctionData({
        abi: testUsdAbi,
        functionName: "approve",
        args: [gw.chain.accounts[7]!.address, 0n],
      }),
    }));
  const sendOf = async (key: string) => {
    const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}` }>(
      "SELECT tx_hash, raw_tx FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    return { txHash: row!.tx_hash, fees: parseTransaction(row!.raw_tx) };
  };
  /** What the wallet's first send offers now: twice the latest base fee and the 1 gwei tip (gas.ts). */
  const offeredNow = async () => 2n * (await readBaseFee(gw.chain.publicClient)) + 1_000_000_000n;

  it("is bumped up to the cap when that still raises both fees by the node's least (10%)", async () => {
    const { logger } = recordingLogger();
    await setAutomine(false);
    try {
      const offered = await offeredNow();
      // Room for 11% above what it offers: 12.5% passes the cap, 10% does not.
      const journal = cappedJournal((offered * 111n) / 100n, logger);
      const key = "approve:near-cap";
      expect(await approveNothing(journal, key)).toMatchObject({ attempt_id: key });
      const before = await sendOf(key);
      expect(before.fees.maxFeePerGas).toBe(offered);
      await keepOpenSends(journal);
      const after = await sendOf(key);
      // Before: not replaced (the 12.5% bump passed the cap), the send left as it was for good.
      expect(after.txHash).not.toBe(before.txHash);
      expect(after.fees.maxFeePerGas).toBe(journal.gas.maxFeeWei);
      expect(after.fees.maxFeePerGas! * 10n).toBeGreaterThanOrEqual(before.fees.maxFeePerGas! * 11n);
      expect(after.fees.maxPriorityFeePerGas! * 10n).toBeGreaterThanOrEqual(
        before.fees.maxPriorityFeePerGas! * 11n,
      );
      // The node took the replacement for the one it had.
      expect(await gw.chain.publicClient.getTransaction({ hash: after.txHash })).toMatchObject({
        hash: after.txHash,
      });
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.mine(1);
    await expectMined([{ tx_hash: (await sendOf("approve:near-cap")).txHash }]);
  });

  it("is left as it is when no bump within the cap is a replacement the node takes, said once", async () => {
    const { logger, lines } = recordingLogger();
    let journal: SendJournal | undefined;
    let txHash: `0x${string}` | undefined;
    await setAutomine(false);
    try {
      // Signed at the cap: twice the base fee and the tip is above it, the base fee and the tip below.
      const cap = (await offeredNow()) - 1n;
      journal = cappedJournal(cap, logger);
      const key = "approve:at-cap";
      expect(await approveNothing(journal, key)).toMatchObject({ attempt_id: key });
      const before = await sendOf(key);
      expect(before.fees.maxFeePerGas).toBe(cap);
      // Pass after pass: left as it is, and said once.
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      expect((await sendOf(key)).txHash).toBe(before.txHash);
      txHash = before.txHash;
      const warned = lines.filter((line) => line.level === "warn");
      // Before: nothing said, pass after pass.
      expect(warned).toHaveLength(1);
      expect(warned[0]!.fields).toMatchObject({
        send: key,
        txHash: before.txHash,
        maxFeePerGas: cap.toString(),
        maxPriorityFeePerGas: before.fees.maxPriorityFeePerGas!.toString(),
        maxFeeWei: cap.toString(),
      });
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.mine(1);
    await expectMined([{ tx_hash: (await sendOf("approve:at-cap")).txHash }]);
    // Mined: the journal forgets it (before, what it said it kept for the process's life).
    expect(journal!.unreplaceable.has(txHash!)).toBe(true);
    await keepOpenSends(journal!);
    expect(journal!.unreplaceable.has(txHash!)).toBe(false);
  });

  it("is left as it is when the base fee and the tip alone pass the cap, said once", async () => {
    const { logger, lines } = recordingLogger();
    const key = "approve:above-cap";
    await setAutomine(false);
    try {
      expect(await approveNothing(gatewayJournal(120_000), key)).toMatchObject({ attempt_id: key });
      const before = await sendOf(key);
      // The cap lowered below the base fee and the tip (or the base fee risen above it) while it waits.
      const cap = (await readBaseFee(gw.chain.publicClient)) + 1_000_000_000n - 1n;
      const journal = cappedJournal(cap, logger);
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      expect((await sendOf(key)).txHash).toBe(before.txHash);
      const warned = lines.filter((line) => line.level === "warn" && line.fields.send === key);
      // Before: nothing said, pass after pass.
      expect(warned).toHaveLength(1);
      expect(warned[0]!.message).toMatch(/above the gas cap/);
      expect(warned[0]!.fields).toMatchObject({ txHash: before.txHash, maxFeeWei: cap.toString() });
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.mine(1);
    await expectMined([{ tx_hash: (await sendOf(key)).txHash }]);
  });
});

describe("a replacement the node refuses as underpriced", () => {
  /**
   * The chain, its refusals of a replacement said in `words`: geth's (anvil's, reth's) by default. Hardhat decides,
   * but its words name the nonce, which the broadcast took for "nonce too low" and let pass.
   */
  const saying = (words: string) =>
    custom({
      request: async (args: { method: string; params?: unknown }) => {
        try {
          return await gw.chain.provider.request(args as never);
        } catch (error) {
          if (
            args.method === "eth_sendRawTransaction" &&
            /replacement transaction underpriced/i.test(String(error))
          )
            throw Object.assign(new Error(words), { code: -32000 });
          throw error;
        }
      },
    });
  const publicClient = (words = "replacement transaction underpriced") =>
    createPublicClient({ chain: gw.chain.chain, transport: saying(words), pollingInterval: 50 });

  /** The attempt's send replaced by 5% (the node asks 10%), committed as replaceIfStuck commits one. */
  async function replacedByTooLittle(attemptId: string) {
    const [first] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number }>(
      "SELECT tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
      [attemptId],
    );
    const { r: _r, s: _s, v: _v, yParity: _yParity, ...old } = parseTransaction(first!.raw_tx);
    const raw = await gw.chain.walletClient.signTransaction({
      ...old,
      maxFeePerGas: (old.maxFeePerGas! * 105n) / 100n,
      maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * 105n) / 100n,
    } as never);
    const bumped = keccak256(raw);
    await gw.app.db.query(
      "UPDATE evm_sends SET tx_hash = $2, raw_tx = $3, signed_at = now() WHERE attempt_id = $1",
      [attemptId, bumped, raw],
    );
    await gw.app.db.query(
      "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)",
      [attemptId, first!.tx_hash, first!.raw_tx],
    );
    return { first: first!, bumped };
  }

  it.each([
    ["geth's", "replacement transaction underpriced", "att_replacement_underpriced"],
    ["Nethermind's", "FeeTooLowToCompete", "att_replacement_too_low_to_compete"],
    ["Nethermind's blob", "ReplacementNotAllowed", "att_replacement_not_allowed"],
  ])(
    "leaves the send to the transaction it replaced, said once (%s words): no pass or run of the attempt throws, and that one settles it",
    async (_node, words, attemptId) => {
      const keeper = recordingLogger();
      const recovery = recordingLogger();
      const rail = anotherProcessRail(gw, {
        publicClient: publicClient(words),
        receiptTimeoutMs: 300,
        logger: recovery.logger,
      });
      const journal = createSendJournal({
        db: gw.app.db,
        publicClient: publicClient(words),
        walletClient: gw.chain.walletClient,
        confirmations: 1,
        receiptTimeoutMs: 30_000,
        gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
        replaceAfterMs: 120_000,
        logger: keeper.logger,
      });
      const attempt = payout(attemptId, 6_161n);
      let first: { tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number } | undefined;
      let bumped: `0x${string}` | undefined;
      await setAutomine(false);
      try {
        expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
        // As a cap leaves 10% to a node asking 12.5%.
        ({ first, bumped } = await replacedByTooLittle(attempt.id));
        // Before: "broadcast … failed", pass after pass, run after run, until the one replaced was mined (in
        // Nethermind's words, until this change too).
        await keepOpenSends(journal);
        await keepOpenSends(journal);
        expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
        expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
        await expect(gw.chain.publicClient.getTransaction({ hash: bumped })).rejects.toThrow();
        // Said once by each process, naming the send and its refused transaction.
        for (const { lines } of [keeper, recovery]) {
          const warned = lines.filter((line) => line.level === "warn");
          expect(warned).toHaveLength(1);
          expect(warned[0]!.message).toMatch(/refused as underpriced/);
          expect(warned[0]!.fields).toMatchObject({ send: attempt.id, txHash: bumped });
        }
      } finally {
        await setAutomine(true);
      }
      await gw.chain.networkHelpers.mine(1);
      expect(await rail.execute(attempt)).toMatchObject({
        status: "succeeded",
        evidence: { txHash: first!.tx_hash },
      });
    },
  );

  it("says once a send of a wallet the key rotated from whose replacement the node refuses as underpriced, whatever the hot wallet's count", async () => {
    const { chain } = gw;
    const key = "att_retired_replacement_underpriced";
    const keeper = recordingLogger();
    const journal = gatewayJournal(120_000, keeper.logger);
    await setAutomine(false);
    let bumped: Hex;
    try {
      const journaled = await retiredUnderpricedBump(key, { walletKept: true });
      bumped = journaled.bumped;
      // The hot wallet's count is past this send's nonce (0): before, each pass forgot the send by that count, and
      // said it again.
      expect(
        await chain.publicClient.getTransactionCount({ address: chain.walletClient.account!.address }),
      ).toBeGreaterThan(0);
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      const said = keeper.lines.filter(
        (line) => line.fields.send === key && /refused as underpriced/.test(line.message),
      );
      expect(said).toHaveLength(1);
      expect(said[0]!.fields).toMatchObject({ txHash: keccak256(bumped) });
      expect(journal.unreplaceable.get(keccak256(bumped))).toEqual({
        nonce: 0,
        wallet: journaled.retired.toLowerCase(),
      });
    } finally {
      await setAutomine(true);
    }
    // Mined (the one replaced): its wallet's count forgets it.
    await chain.networkHelpers.mine(1);
    await keepOpenSends(journal);
    expect(journal.unreplaceable.has(keccak256(bumped))).toBe(false);
  });

  it("marks a send journaled without its wallet (before that column), sent again under its key, as its signer's: said once, not again once the hot wallet's count passed its nonce, and forgotten once mined", async () => {
    const { chain } = gw;
    const key = "att_walletless_replacement_underpriced";
    const recorded = recordingLogger();
    const journal = gatewayJournal(120_000, recorded.logger);
    await setAutomine(false);
    let bumped: Hex;
    try {
      // evm_sends.wallet NULL: a row journaled before evm migration 0011.
      const journaled = await retiredUnderpricedBump(key, { walletKept: false });
      const { retired } = journaled;
      bumped = journaled.bumped;
      const again = () => sendWithinQueue(journal, key, { to: retired, data: "0x" });
      expect(await again()).toMatchObject({
        attempt_id: key,
        tx_hash: keccak256(bumped),
        broadcast: "taken",
      });
      expect(journal.unreplaceable.get(keccak256(bumped))).toEqual({
        nonce: 0,
        wallet: retired.toLowerCase(),
      });
      // The keeper's pass forgets the hot wallet's marks its count passed (it is past 0): before, this send's too,
      // marked as the hot wallet's, and the next broadcast said it again.
      expect(
        await chain.publicClient.getTransactionCount({ address: chain.walletClient.account!.address }),
      ).toBeGreaterThan(0);
      await keepOpenSends(journal);
      await again();
      const said = recorded.lines.filter(
        (line) => line.fields.send === key && /refused as underpriced/.test(line.message),
      );
      expect(said).toHaveLength(1);
    } finally {
      await setAutomine(true);
    }
    // Mined (the one replaced): its wallet's count, read by the keeper though no open row names that wallet, forgets
    // it. Before, it stayed for the process's life.
    await chain.networkHelpers.mine(1);
    await keepOpenSends(journal);
    expect(journal.unreplaceable.has(keccak256(bumped))).toBe(false);
  });

  it("takes a pool's refusal of the transaction itself (geth's bare \"transaction underpriced\") for not taken, not for a replacement's", async () => {
    const keeper = recordingLogger();
    const rail = anotherProcessRail(gw, { receiptTimeoutMs: 300 });
    // Geth's pool full, or the fee below its txpool.pricelimit: no replacement refused, and nothing may hold the nonce
    // (the full pool evicts the transaction the refused one would replace, as it refuses it). Were that one still
    // there, the node would show it and the broadcast be taken: nonceTakenOnNode asks of every transaction of the send.
    const evicted: { hash?: `0x${string}` } = {};
    const evicting = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          try {
            return await gw.chain.provider.request(args as never);
          } catch (error) {
            if (
              args.method === "eth_sendRawTransaction" &&
              /replacement transaction underpriced/i.test(String(error))
            ) {
              if (evicted.hash !== undefined) await gw.chain.networkHelpers.dropTransaction(evicted.hash);
              throw Object.assign(new Error("transaction underpriced"), { code: -32000 });
            }
            throw error;
          }
        },
      }),
      pollingInterval: 50,
    });
    const journal = createSendJournal({
      db: gw.app.db,
      publicClient: evicting,
      walletClient: gw.chain.walletClient,
      confirmations: 1,
      receiptTimeoutMs: 30_000,
      gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
      replaceAfterMs: 120_000,
      logger: keeper.logger,
    });
    const attempt = payout("att_pool_underpriced", 6_162n);
    let bumped: `0x${string}` | undefined;
    await setAutomine(false);
    try {
      expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
      let first: { tx_hash: `0x${string}` };
      ({ first, bumped } = await replacedByTooLittle(attempt.id));
      evicted.hash = first.tx_hash;
      // Before 9b9ea96: taken for a replacement's refusal, said as one and let pass. The node shows the nonce open and
      // neither transaction: not taken, said so; broadcast again at the next pass.
      await keepOpenSends(journal);
      expect(journal.unreplaceable.has(bumped)).toBe(false);
      const warned = keeper.lines.filter((line) => line.level === "warn");
      expect(warned).toHaveLength(1);
      expect(warned[0]!.message).toMatch(/not taken/);
      expect(warned[0]!.fields).toMatchObject({ send: attempt.id, txHash: bumped });
    } finally {
      await setAutomine(true);
    }
    // Broadcast again (a pool with room takes it), and mined.
    await keepOpenSends(gatewayJournal(120_000));
    await expectMined([{ tx_hash: bumped! }]);
  });
});

/**
 * A send of a wallet a key rotation retired (a fresh one, funded), journaled under `key`: a transfer to itself at nonce
 * 0, signed before the rotation, the first in the node's pool (automining off) and a bump of 5% over it (the node asks
 * 10%) the row's, the first kept as the one it replaced. Its wallet kept in the row, or NULL as before evm migration
 * 0011. The wallet, and the bump's bytes.
 */
async function retiredUnderpricedBump(
  key: string,
  { walletKept }: { walletKept: boolean },
): Promise<{ retired: Address; bumped: Hex }> {
  const { chain } = gw;
  const retired = privateKeyToAccount(generatePrivateKey());
  await chain.networkHelpers.setBalance(retired.address, 10n ** 18n);
  const transfer = (twentieths: bigint) =>
    retired.signTransaction({
      chainId: chain.chain.id,
      type: "eip1559",
      nonce: 0,
      to: retired.address,
      gas: 21_000n,
      maxFeePerGas: (100_000_000_000n * twentieths) / 20n,
      maxPriorityFeePerGas: (1_000_000_000n * twentieths) / 20n,
    });
  const first = await transfer(20n);
  const bumped = await transfer(21n);
  await chain.publicClient.sendRawTransaction({ serializedTransaction: first });
  await gw.app.db.query(
    "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, 0, $5)",
    [key, chain.chain.id, keccak256(bumped), bumped, walletKept ? retired.address.toLowerCase() : null],
  );
  await gw.app.db.query("INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)", [
    key,
    keccak256(first),
    first,
  ]);
  return { retired: retired.address, bumped };
}

/** The gateway's send journal on its database, chain and wallet, as another process would have it. */
const gatewayJournal = (replaceAfterMs: number, logger?: Logger) =>
  createSendJournal({
    db: gw.app.db,
    publicClient: gw.chain.publicClient,
    walletClient: gw.chain.walletClient,
    confirmations: 1,
    receiptTimeoutMs: 30_000,
    gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
    replaceAfterMs,
    ...(logger === undefined ? {} : { logger }),
  });

/**
 * A payout signed and journaled whose broadcast failed, on a node that takes every call but the broadcast (its error
 * one viem cannot name: before, "unknown" read as "already known", and the send was taken for broadcast): in flight.
 */
async function strandedPayout(id: string, amount: bigint): Promise<OutgoingAttempt> {
  const refusing = custom({
    request: (args: { method: string; params?: unknown }) => {
      if (args.method === "eth_sendRawTransaction") throw new Error("An unknown RPC error occurred.");
      return gw.chain.provider.request(args as never);
    },
  });
  const failingPublic = createPublicClient({
    chain: gw.chain.chain,
    transport: refusing,
    pollingInterval: 50,
  });
  const stranded = payout(id, amount);
  expect(await anotherProcessRail(gw, { publicClient: failingPublic }).execute(stranded)).toMatchObject({
    status: "in_flight",
  });
  return stranded;
}

/**
 * A stranded payout (strandedPayout) and one sent after it, which takes the next nonce and waits behind the gap in the
 * node's pool (sent while Hardhat does not automine: automining, it refuses a nonce past the pending one, as a node
 * that does not queue it would); `sendsOf` reads both sends, lowest nonce first.
 */
async function sendBehindAGap(head: [string, bigint], next: [string, bigint], receiptTimeoutMs: number) {
  const stranded = await strandedPayout(...head);
  const behind = payout(...next);
  await setAutomine(false);
  try {
    expect(await anotherProcessRail(gw, { receiptTimeoutMs }).execute(behind)).toMatchObject({
      status: "in_flight",
    });
  } finally {
    await setAutomine(true);
  }
  const sendsOf = () =>
    gw.app.db.query<{ attempt_id: string; tx_hash: `0x${string}`; nonce: number }>(
      "SELECT attempt_id, tx_hash, nonce FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [[stranded.id, behind.id]],
    );
  return { stranded, behind, sendsOf };
}

/** Waits for each send's transaction to be mined, and expects it a success. */
async function expectMined(sends: readonly { tx_hash: `0x${string}` }[]): Promise<void> {
  for (const send of sends) {
    const receipt = await gw.chain.publicClient.waitForTransactionReceipt({
      hash: send.tx_hash,
      timeout: 10_000,
    });
    expect(receipt.status).toBe("success");
  }
}

describe("a send whose broadcast failed, that nobody sends again", () => {
  it("is broadcast again by the keeper, and the sends behind its nonce land", async () => {
    // The next send takes the nonce after it, and waits behind the gap.
    const { stranded, behind, sendsOf } = await sendBehindAGap(
      ["att_broadcast_lost", 1_111n],
      ["att_behind_the_gap", 2_222n],
      500,
    );
    const sends = await sendsOf();
    expect(sends.map((send) => send.attempt_id)).toEqual([stranded.id, behind.id]);
    expect(Number(sends[1]!.nonce)).toBe(Number(sends[0]!.nonce) + 1);
    for (const send of sends)
      await expect(gw.chain.publicClient.getTransactionReceipt({ hash: send.tx_hash })).rejects.toThrow();

    // Before: nothing broadcast the first again unless its key was sent again, and both stayed unmined for good.
    const journal = gatewayJournal(120_000);
    expect(await keepOpenSends(journal)).toBeGreaterThanOrEqual(2);
    await expectMined(sends);
    // Nothing is left open: a second keep finds nothing to do.
    expect(await keepOpenSends(journal)).toBe(0);
  });
});

describe("sends queued behind a nonce that is not mined", () => {
  it("are left as they are while they offer what the chain asks: only the lowest is replaced", async () => {
    const { stranded, behind, sendsOf } = await sendBehindAGap(
      ["att_queue_head", 3_331n],
      ["att_queued_behind", 3_332n],
      300,
    );
    const [head, queued] = await sendsOf();
    await setAutomine(false);
    try {
      // Both due at once (replaceAfterMs 0), nothing mined meanwhile: the head is replaced, the one behind it waits.
      // Before, it was bumped too, at every pass, while only the head held it.
      expect(await keepOpenSends(gatewayJournal(0))).toBeGreaterThanOrEqual(2);
      expect(await keepOpenSends(gatewayJournal(0))).toBeGreaterThanOrEqual(2);
      const [headAfter, queuedAfter] = await sendsOf();
      expect(headAfter!.tx_hash).not.toBe(head!.tx_hash);
      expect(queuedAfter!.tx_hash).toBe(queued!.tx_hash);
      const replaced = await gw.app.db.query<{ attempt_id: string }>(
        "SELECT attempt_id FROM evm_sends_replaced WHERE attempt_id = ANY($1)",
        [[stranded.id, behind.id]],
      );
      expect(replaced.map((row) => row.attempt_id)).toEqual([stranded.id, stranded.id]);
    } finally {
      await setAutomine(true);
    }
    // Both land once blocks come.
    await gw.chain.networkHelpers.mine(1);
    const journal = gatewayJournal(120_000);
    await keepOpenSends(journal);
    await expectMined(await sendsOf());
  });
});

describe("a gas estimate the node answers with an error that is no refusal of the call", () => {
  it("fails rail_unavailable, not as a shortfall of the wallet: nothing signed", async () => {
    const { chain } = gw.chain;
    // A node behind the others ("header not found"): it said nothing of the call.
    const behindNode = custom({
      request: (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_estimateGas") throw new Error("header not found");
        return gw.chain.provider.request(args as never);
      },
    });
    const wallet = gw.chain.walletClient;
    const walletClient = createWalletClient({ account: wallet.account, chain, transport: behindNode });
    const attempt = payout("att_estimate_unknown", 5_551n);
    const outcome = await anotherProcessRail(gw, { walletClient }).execute(attempt);
    // Before: insufficient_liquidity, as if the hot wallet were short.
    expect(outcome).toMatchObject({ status: "failed", code: "rail_unavailable" });
    expect(
      await gw.app.db.query("SELECT attempt_id FROM evm_sends WHERE attempt_id = $1", [attempt.id]),
    ).toEqual([]);
  });

  it("still takes a revert whose data the gateway cannot decode for the chain's refusal", async () => {
    // Hardhat's answer (code 3 under an error viem does not name), as geth's "execution reverted" is.
    const wallet = gw.chain.walletClient;
    const refused = await wallet
      .prepareTransactionRequest({
        account: wallet.account,
        chain: wallet.chain,
        to: gw.chain.contracts.splitter,
        data: "0xdeadbeef",
        type: "eip1559",
        parameters: ["chainId", "gas", "type"],
      })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(refused).not.toBeNull();
    expect(revertName(refused)).toBeNull();
    expect(chainRefused(refused)).toBe(true);
  });
});

describe("a payout whose nonce another transaction took", () => {
  it("fails once that transaction is final: none of its own can be mined any more", async () => {
    const lost = await strandedPayout("att_nonce_taken", 4_441n);
    const [send] = await gw.app.db.query<{ nonce: number }>(
      "SELECT nonce FROM evm_sends WHERE attempt_id = $1",
      [lost.id],
    );
    // The wallet's key used outside the journal (an operator's cancel) for that nonce, then buried.
    const wallet = gw.chain.walletClient;
    await wallet.sendTransaction({
      account: wallet.account,
      chain: wallet.chain,
      to: wallet.account.address,
      value: 0n,
      nonce: Number(send!.nonce),
    });
    for (let i = 0; i < 10; i += 1)
      await gw.chain.provider.request({ method: "evm_mine", params: [] } as never);
    // Run again (recovery does). Before: in_flight at every pass, for good.
    expect(await anotherProcessRail(gw, { receiptTimeoutMs: 300 }).execute(lost)).toMatchObject({
      status: "failed",
      code: "rejected",
      final: true,
    });
  });
});

describe("a broadcast the node refuses", () => {
  const wallet = () => gw.chain.walletClient;

  /** The wallet's nonce row moved one past the chain's pending count: the next send is signed with a gap before it. */
  async function gapBeforeNextSend(): Promise<number> {
    const address = wallet().account.address;
    const pending = await gw.chain.publicClient.getTransactionCount({ address, blockTag: "pending" });
    await gw.app.db.query(
      `INSERT INTO evm_nonces (chain_id, wallet, next_nonce) VALUES ($1, $2, $3)
       ON CONFLICT (chain_id, wallet) DO UPDATE SET next_nonce = excluded.next_nonce`,
      [gw.chain.chain.id, address.toLowerCase(), pending + 1],
    );
    return pending;
  }

  const sendOf = async (key: string) => {
    const [send] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}`; nonce: number }>(
      "SELECT tx_hash, raw_tx, nonce FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    return send!;
  };

  it("answers in flight at once when the node did not take the transaction (a nonce past the pending one), said, and lands it once the gap is filled", async () => {
    const gap = await gapBeforeNextSend();
    const attempt = payout("att_nonce_gap", 7_771n);
    const { logger, lines } = recordingLogger();
    // A receipt awaited this long would outlast the test: none is awaited.
    const rail = anotherProcessRail(gw, { receiptTimeoutMs: 600_000, logger });
    // Before: thrown (through the API a 500, while the send was journaled and broadcast again later: a client retrying
    // under a new key paid twice). Before 9b9ea96: let pass, its receipt awaited, nothing of it at the node.
    const outcome = await rail.execute(attempt);
    const send = await sendOf(attempt.id);
    expect(outcome).toEqual({ status: "in_flight", reference: send.tx_hash });
    expect(Number(send.nonce)).toBe(gap + 1);
    const warned = lines.filter((line) => line.level === "warn");
    expect(warned).toHaveLength(1);
    expect(warned[0]!.message).toMatch(/not taken/);
    expect(warned[0]!.fields).toMatchObject({ send: attempt.id, txHash: send.tx_hash, nonce: gap + 1 });
    await expect(gw.chain.publicClient.getTransaction({ hash: send.tx_hash })).rejects.toThrow();
    // Hardhat's words for it, while it automines.
    await expect(
      gw.chain.publicClient.sendRawTransaction({ serializedTransaction: send.raw_tx }),
    ).rejects.toThrow(/nonce too high/i);
    // A node saying "nonce too low" of it (one of several behind a load balancer) is no proof: the node asked shows
    // the nonce open and the transaction unknown. Before 9b9ea96: let pass, its receipt awaited.
    const sayingTooLow = custom({
      request: async (args: { method: string; params?: unknown }) => {
        try {
          return await gw.chain.provider.request(args as never);
        } catch (error) {
          if (args.method === "eth_sendRawTransaction" && /nonce too high/i.test(String(error)))
            throw Object.assign(new Error("nonce too low"), { code: -32000 });
          throw error;
        }
      },
    });
    const behind = createPublicClient({
      chain: gw.chain.chain,
      transport: sayingTooLow,
      pollingInterval: 50,
    });
    expect(
      await anotherProcessRail(gw, { publicClient: behind, receiptTimeoutMs: 600_000 }).execute(attempt),
    ).toEqual({ status: "in_flight", reference: send.tx_hash });
    // The gap filled (the wallet's key used outside the journal for that nonce): the attempt run again broadcasts
    // the same transaction, which is mined.
    await wallet().sendTransaction({
      account: wallet().account,
      chain: wallet().chain,
      to: wallet().account.address,
      value: 0n,
      nonce: gap,
    });
    expect(await rail.execute(attempt)).toMatchObject({
      status: "succeeded",
      evidence: { txHash: send.tx_hash },
    });
    expect((await sendOf(attempt.id)).tx_hash).toBe(send.tx_hash);
  });

  it("lets pass a transaction the node already holds, or has mined: the receipt decides", async () => {
    const attempt = payout("att_resent_known", 7_772n);
    const rail = anotherProcessRail(gw, { receiptTimeoutMs: 300 });
    await setAutomine(false);
    let send: Awaited<ReturnType<typeof sendOf>>;
    try {
      expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
      send = await sendOf(attempt.id);
      await expect(
        gw.chain.publicClient.sendRawTransaction({ serializedTransaction: send.raw_tx }),
      ).rejects.toThrow(/known transaction/i);
      // Run again, its transaction broadcast again: in flight, nothing thrown.
      expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.mine(1);
    await expect(
      gw.chain.publicClient.sendRawTransaction({ serializedTransaction: send.raw_tx }),
    ).rejects.toThrow(/nonce too low/i);
    expect(await rail.execute(attempt)).toMatchObject({
      status: "succeeded",
      evidence: { txHash: send.tx_hash },
    });
  });

  /**
   * The chain, every broadcast refused in `words` (as a node of another kind words its refusals); `hiding`, its
   * transactions unknown to it besides (a node behind a load balancer other than the one holding them).
   */
  const refusingIn = (words: string, { hiding = false } = {}) =>
    createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction")
            throw Object.assign(new Error(words), { code: -32000 });
          if (hiding && args.method === "eth_getTransactionByHash") return null;
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });

  it.each([
    ["Cosmos EVM", "invalid nonce; got 3, expected 4: invalid sequence", "att_mined_cosmos"],
    ["older Nethermind", "OldNonce, Current nonce: 4, nonce of rejected tx: 3", "att_mined_nethermind"],
    ["OpenEthereum", "Transaction nonce is too low. Try incrementing the nonce.", "att_mined_openethereum"],
  ])(
    "reaches the receipt of a mined send whose bytes the node refuses again in its words (%s)",
    async (_node, words, id) => {
      const attempt = payout(id, 7_773n);
      await setAutomine(false);
      try {
        expect(await anotherProcessRail(gw, { receiptTimeoutMs: 300 }).execute(attempt)).toMatchObject({
          status: "in_flight",
        });
      } finally {
        await setAutomine(true);
      }
      await gw.chain.networkHelpers.mine(1);
      const send = await sendOf(attempt.id);
      const { logger, lines } = recordingLogger();
      // Recovery runs it again; its broadcast again refused. Before: thrown at every run ("broadcast … failed"), the
      // receipt never read, the payment processing for good.
      const rail = anotherProcessRail(gw, { publicClient: refusingIn(words), receiptTimeoutMs: 300, logger });
      expect(await rail.execute(attempt)).toMatchObject({
        status: "succeeded",
        evidence: { txHash: send.tx_hash },
      });
      expect(lines.filter((line) => line.level === "warn")).toEqual([]);
    },
  );

  it.each([
    ["anvil, Substrate", "transaction already imported", "att_held_imported"],
    ["a mempool", "tx already in mempool", "att_held_in_mempool"],
  ])(
    "lets pass a transaction the node holds, said in its words (%s): in flight, then its receipt",
    async (_node, words, id) => {
      const attempt = payout(id, 7_774n);
      const { logger, lines } = recordingLogger();
      await setAutomine(false);
      let send: Awaited<ReturnType<typeof sendOf>>;
      try {
        expect(await anotherProcessRail(gw, { receiptTimeoutMs: 300 }).execute(attempt)).toMatchObject({
          status: "in_flight",
        });
        send = await sendOf(attempt.id);
        // Before: thrown at every run while it waited in the pool. The node's words alone tell it held: the node asked
        // shows neither the nonce used (not mined yet) nor the transaction (hidden).
        const rail = anotherProcessRail(gw, {
          publicClient: refusingIn(words, { hiding: true }),
          receiptTimeoutMs: 300,
          logger,
        });
        expect(await rail.execute(attempt)).toMatchObject({ status: "in_flight" });
      } finally {
        await setAutomine(true);
      }
      await gw.chain.networkHelpers.mine(1);
      const rail = anotherProcessRail(gw, { publicClient: refusingIn(words), receiptTimeoutMs: 300, logger });
      expect(await rail.execute(attempt)).toMatchObject({
        status: "succeeded",
        evidence: { txHash: send.tx_hash },
      });
      expect(lines.filter((line) => line.level === "warn")).toEqual([]);
    },
  );

  it("through the API: a payout whose broadcast the node refuses is answered 202 processing, not 500, and succeeds once the gap is filled", async () => {
    const gap = await gapBeforeNextSend();
    const created = await gw.call("POST", "/v1/payments", {
      amount: "1.25",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: gw.chain.accounts[8]!.address },
    });
    // Before: 500 internal_error, while the payment went on and its send was broadcast again later: the client,
    // retrying under a new Idempotency-Key, paid twice.
    expect(created).toMatchObject({ status: 202, body: { status: "processing" } });
    const [attempt] = await gw.app.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM attempts WHERE payment_id = $1",
      [created.body.id],
    );
    expect(attempt?.status).toBe("in_flight");
    const send = await sendOf(attempt!.id);
    expect(Number(send.nonce)).toBe(gap + 1);
    await wallet().sendTransaction({
      account: wallet().account,
      chain: wallet().chain,
      to: wallet().account.address,
      value: 0n,
      nonce: gap,
    });
    // Recovery runs the attempt again: the same transaction broadcast, and mined.
    await recoverOpenAttempts(gw.app.payments, { quietMs: 0 });
    expect(await gw.call("GET", `/v1/payments/${created.body.id}`)).toMatchObject({
      status: 200,
      body: { status: "succeeded" },
    });
    expect((await sendOf(attempt!.id)).tx_hash).toBe(send.tx_hash);
    await expectMined([send]);
  });
});

describe("the transactions of a send", () => {
  it("include the one stored now when the row asked about was read before a fee bump replaced it", async () => {
    const [first, bumped] = [keccak256("0x01"), keccak256("0x02")];
    const key = "att_read_before_bump";
    // Another wallet's (a retired one's), made up and done: the keeper and the gas pass, which follow a retired
    // wallet's open sends too, leave it alone.
    const wallet = "0x00000000000000000000000000000000000000aa";
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet, gas_done) VALUES ($1, $2, $3, '0x', 0, $4, true)",
      [key, gw.chain.chain.id, bumped, wallet],
    );
    await gw.app.db.query(
      "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, '0x')",
      [key, first],
    );
    // Before: the row's hash and the replaced ones, the first twice and the bump not at all; a payout judged by them
    // could read "never mined" while its bump was.
    expect(await hashesOfSend(gw.app.db, { attempt_id: key, tx_hash: first })).toEqual([first, bumped]);
    expect(await hashesOfSend(gw.app.db, { attempt_id: key, tx_hash: bumped })).toEqual([bumped, first]);
  });
});

describe("a send's transactions looked for a receipt, in their order", () => {
  /**
   * A send of another wallet (a retired one's) whose transactions, in the send's order, are `order` (the current one
   * first, then those it replaced, the newest first), `mined` (mined, from another account) among them where named;
   * the others made up. Every receipt asked is counted (and the most asked at once), and answered as `answer` says for
   * the hash (the node's by default; "slow": the node's, 20 ms later).
   */
  async function sendLookedFor(
    key: string,
    order: readonly string[],
    answer: (name: string) => "error" | "hang" | "slow" | "node" = () => "node",
  ) {
    const { transactionHash: mined } = await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [gw.chain.accounts[8]!.address, 1n],
    });
    const hashOf = (name: string) =>
      name === "mined" ? mined : keccak256(new TextEncoder().encode(`${key}:${name}`));
    const nameOf = new Map(order.map((name) => [hashOf(name).toLowerCase(), name]));
    // Made up and done (no real transaction's bytes): the keeper and the gas pass leave it alone.
    const wallet = "0x00000000000000000000000000000000000000aa";
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet, gas_done) VALUES ($1, $2, $3, '0x', 0, $4, true)",
      [key, gw.chain.chain.id, hashOf(order[0]!), wallet],
    );
    for (const [at, name] of order.slice(1).entries())
      await gw.app.db.query(
        `INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx, replaced_at)
         VALUES ($1, $2, '0x', now() - $3::int * interval '1 second')`,
        [key, hashOf(name), at + 1],
      );
    const asked: string[] = [];
    const receipts = { inFlight: 0, most: 0 };
    const hung = { release: () => {} };
    const released = new Promise<void>((resolve) => {
      hung.release = resolve;
    });
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method !== "eth_getTransactionReceipt") return gw.chain.provider.request(args as never);
          const name = nameOf.get((args.params as [string])[0].toLowerCase()) ?? "?";
          asked.push(name);
          receipts.inFlight += 1;
          receipts.most = Math.max(receipts.most, receipts.inFlight);
          try {
            const said = answer(name);
            // Invalid params (-32602): an error viem does not ask again for.
            if (said === "error") throw Object.assign(new Error(`no answer for ${name}`), { code: -32602 });
            if (said === "hang") await released;
            if (said === "slow") await new Promise((resolve) => setTimeout(resolve, 20));
            return await gw.chain.provider.request(args as never);
          } finally {
            receipts.inFlight -= 1;
          }
        },
      }),
      pollingInterval: 50,
    });
    const journal = stallingJournal(publicClient, 120_000);
    return {
      journal,
      mined,
      asked,
      receipts,
      release: hung.release,
      row: { attempt_id: key, tx_hash: hashOf(order[0]!), raw_tx: "0x" as const, nonce: 0 },
    };
  }

  it("a few at a time, the one mined found behind many refused bumps", async () => {
    // The send's oldest transaction mined, behind twelve bumps no node took; each receipt answered a little later.
    const bumps = Array.from({ length: 12 }, (_, bump) => `b${11 - bump}`);
    const { journal, mined, asked, receipts, row } = await sendLookedFor(
      "att_receipt_behind_bumps",
      [...bumps, "mined"],
      () => "slow",
    );
    // Before: asked one at a time, a call to the node in turn for each.
    expect(await receiptOf(journal, row)).toMatchObject({ transactionHash: mined, status: "success" });
    expect(receipts.most).toBeGreaterThan(1);
    expect(receipts.most).toBeLessThanOrEqual(4);
    receipts.most = 0;
    asked.length = 0;
    // In the send's order (its current transaction, then those it replaced, the newest first): the mined one last.
    expect(await finalReceiptOf(journal, row)).toMatchObject({ transactionHash: mined });
    expect(asked).toEqual([...bumps, "mined"]);
    expect(receipts.most).toBeGreaterThan(1);
    expect(receipts.most).toBeLessThanOrEqual(4);
  });

  it("the current one mined: it alone asked", async () => {
    const { journal, mined, asked, row } = await sendLookedFor("att_receipt_current", [
      "mined",
      "b1",
      "b2",
      "b3",
      "b4",
    ]);
    expect(await finalReceiptOf(journal, row)).toMatchObject({ transactionHash: mined });
    // The current one asked alone first: none of the others for nothing.
    expect(asked).toEqual(["mined"]);
  });

  it("one after the mined one not answering: the mined one's receipt answered without it", async () => {
    const { journal, mined, asked, release, row } = await sendLookedFor(
      "att_receipt_hung_after",
      ["current", "b1", "mined", "b2", "b3", "b4"],
      (name) => (name === "b2" ? "hang" : "node"),
    );
    try {
      // Answered without waiting for the one hung after it.
      const answered = await Promise.race([
        finalReceiptOf(journal, row),
        new Promise((resolve) => setTimeout(() => resolve("held"), 2_000)),
      ]);
      expect(answered).toMatchObject({ transactionHash: mined });
      expect(new Set(asked)).toEqual(new Set(["current", "b1", "mined", "b2", "b3"]));
    } finally {
      release();
    }
  });

  it("an error on one after the mined one: the mined one's receipt", async () => {
    const { journal, mined, row } = await sendLookedFor(
      "att_receipt_error_after",
      ["current", "b1", "mined", "b2", "b3", "b4"],
      (name) => (name === "b2" || name === "b4" ? "error" : "node"),
    );
    expect(await finalReceiptOf(journal, row)).toMatchObject({ transactionHash: mined });
  });

  it("an error on one before the mined one: the error, as when asked in turn", async () => {
    const { journal, row } = await sendLookedFor(
      "att_receipt_error_before",
      ["current", "b1", "mined", "b2", "b3", "b4"],
      (name) => (name === "b1" ? "error" : "node"),
    );
    await expect(finalReceiptOf(journal, row)).rejects.toThrow(/no answer for b1/);
  });
});

describe("a key whose send is another chain's", () => {
  it("is refused: that send is never broadcast or replaced with this chain's nonce", async () => {
    const journal = gatewayJournal(0);
    const key = "transfer-auth:elsewhere";
    const wallet = gw.chain.walletClient.account.address.toLowerCase();
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, $5, $6)",
      [key, gw.chain.chain.id + 1, `0x${"11".repeat(32)}`, "0x02", 0, wallet],
    );
    // Before: chain 31338's bytes broadcast here, or, due, replaced by a transaction of this chain under its nonce.
    await expect(
      sendOnce(journal, key, async () => ({ to: gw.chain.contracts.testUsd, data: "0x" })),
    ).rejects.toThrow(/is chain \d+'s, not chain/);
    const [kept] = await gw.app.db.query<{ tx_hash: string }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    expect(kept!.tx_hash).toBe(`0x${"11".repeat(32)}`);
  });
});

/**
 * Clients of a node slow to estimate gas (each send holds the queue `delayMs`), signing with the hot wallet;
 * `estimating` is told of each estimate as it begins.
 */
function slowClients(delayMs: number, estimating: () => void = () => {}) {
  const { chain } = gw.chain;
  const slow = custom({
    request: async (args: { method: string; params?: unknown }) => {
      if (args.method === "eth_estimateGas") {
        estimating();
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
      return gw.chain.provider.request(args as never);
    },
  });
  return {
    publicClient: createPublicClient({ chain, transport: slow }),
    walletClient: createWalletClient({ chain, transport: slow, account: gw.chain.walletClient.account }),
  };
}

/** A send journal on a slow node (slowClients) whose queue holds `sendsQueuedMax`, and its sends of an approve. */
function slowJournal(delayMs: number, sendsQueuedMax: number) {
  const journal = createSendJournal({
    db: gw.app.db,
    ...slowClients(delayMs),
    confirmations: 1,
    receiptTimeoutMs: 30_000,
    gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
    replaceAfterMs: 120_000,
    sendsQueuedMax,
  });
  const approve = (key: string, share?: string) =>
    sendOnce(
      journal,
      key,
      async () => ({
        to: gw.chain.contracts.testUsd,
        data: encodeFunctionData({
          abi: testUsdAbi,
          functionName: "approve",
          args: ["0x000000000000000000000000000000000000dEaD", 1n],
        }),
      }),
      share === undefined ? {} : { share },
    );
  return { journal, approve };
}

describe("a wallet's send queue, full", () => {
  it("refuses a new key's send at once (rail_unavailable), nothing signed; follows a key sent before; takes sends again once drained", async () => {
    // A node slow to estimate gas: each send holds the queue a while.
    const { approve } = slowJournal(300, 2);
    const sent = await approve("queue-full:sent-before");
    expect(sent).toHaveProperty("tx_hash");
    const queued = [approve("queue-full:1"), approve("queue-full:2")];
    // Before: the third joined the queue, however long (every tenant's sends waiting behind a slow node).
    // Refused for load (busy), which the router's circuit does not count against the rail.
    expect(await approve("queue-full:3")).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      busy: true,
    });
    // A key sent before is followed (its send broadcast again), not refused.
    const again = approve("queue-full:sent-before");
    const outcomes = await Promise.all([...queued, again]);
    expect(outcomes.map((outcome) => "tx_hash" in outcome)).toEqual([true, true, true]);
    expect((outcomes[2] as { tx_hash: string }).tx_hash).toBe((sent as { tx_hash: string }).tx_hash);
    const refusedRows = await gw.app.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1", [
      "queue-full:3",
    ]);
    expect(refusedRows).toHaveLength(0);
    // Drained: a new key is sent.
    expect(await approve("queue-full:4")).toHaveProperty("tx_hash");
  });

  it("holds at most a quarter of the queue for one tenant: its next send is refused, another tenant's and the platform's are queued", async () => {
    const { journal, approve } = slowJournal(200, 8);
    expect(journal.sendsQueuedPerShareMax).toBe(2);
    const queued = [approve("share:busy-1", "ten_busy"), approve("share:busy-2", "ten_busy")];
    // Before: the busy tenant's third joined the queue, and so on until the whole queue was its own.
    expect(await approve("share:busy-3", "ten_busy")).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      busy: true,
      message: expect.stringMatching(/of this tenant/),
    });
    const others = [approve("share:other-1", "ten_other"), approve("share:platform-1")];
    const outcomes = await Promise.all([...queued, ...others]);
    expect(outcomes.map((outcome) => "tx_hash" in outcome)).toEqual([true, true, true, true]);
    expect(journal.queuedByShare.size).toBe(0);
    // Drained: the busy tenant's next send goes.
    expect(await approve("share:busy-4", "ten_busy")).toHaveProperty("tx_hash");
  });

  it("counts each payout in its tenant's part: one tenant's payouts in flight never refuse another tenant's", async () => {
    // A queue of 4: a part of 1 each.
    let estimated = () => {};
    const estimating = new Promise<void>((resolve) => {
      estimated = resolve;
    });
    const rail = anotherProcessRail(gw, { ...slowClients(300, () => estimated()), sendsQueuedMax: 4 });
    const of = (id: string, tenantId: string) => ({ ...payout(id, 1_000n), tenantId });
    const first = rail.execute(of("att_share_busy_1", "ten_busy"));
    await estimating; // the first payout holds its tenant's place
    // Busy, so that the router's circuit does not count it (before: counted as the rail's ill health, five of them
    // opened its circuit for every tenant), and said as the wallet's queue, not as a node that did not answer.
    const refused = await rail.execute(of("att_share_busy_2", "ten_busy"));
    expect(refused).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      busy: true,
      message: expect.stringMatching(/^\d+ sends of this tenant are queued/),
    });
    // Asked again (as recovery asks), the kept refusal still says busy.
    expect(await rail.execute(of("att_share_busy_2", "ten_busy"))).toEqual(refused);
    const other = await rail.execute(of("att_share_other_1", "ten_other"));
    expect(other.status).toBe("succeeded");
    expect((await first).status).toBe("succeeded");
  });
});

/** The chain, every broadcast of the nonce of the first one refused as geth refuses a fee above its rpc.txfeecap. */
function refusingOneNonce() {
  const refused: { nonce?: number } = {};
  const publicClient = createPublicClient({
    chain: gw.chain.chain,
    transport: custom({
      request: async (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_sendRawTransaction") {
          const { nonce } = parseTransaction((args.params as [`0x${string}`])[0]);
          refused.nonce ??= nonce;
          if (nonce === refused.nonce)
            throw Object.assign(new Error("tx fee (1.21 ether) exceeds the configured cap (1.00 ether)"), {
              code: -32000,
            });
        }
        return gw.chain.provider.request(args as never);
      },
    }),
    pollingInterval: 50,
  });
  return { refused, publicClient };
}

/** The sends under `keys` marked not taken `ms` earlier than they were (the database's clock, as the journal reads it). */
async function notTakenFor(keys: readonly string[], ms: number): Promise<void> {
  const marked = await gw.app.db.query(
    `UPDATE evm_sends SET not_taken_since = not_taken_since - $2::int * interval '1 millisecond'
      WHERE attempt_id = ANY($1) AND not_taken_since IS NOT NULL RETURNING attempt_id`,
    [keys, ms],
  );
  expect(marked).toHaveLength(keys.length);
}

/** The chain, every broadcast of the nonce of the first one refused as refusingOneNonce does, while `refusing.on`. */
function refusingOneNonceFor() {
  const refusing = { on: true, nonce: undefined as number | undefined };
  const publicClient = createPublicClient({
    chain: gw.chain.chain,
    transport: custom({
      request: async (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_sendRawTransaction") {
          const { nonce } = parseTransaction((args.params as [`0x${string}`])[0]);
          refusing.nonce ??= nonce;
          if (refusing.on && nonce === refusing.nonce)
            throw Object.assign(new Error("tx fee (1.21 ether) exceeds the configured cap (1.00 ether)"), {
              code: -32000,
            });
        }
        return gw.chain.provider.request(args as never);
      },
    }),
    pollingInterval: 50,
  });
  return { refusing, publicClient };
}

describe("a send not taken that the node takes again", () => {
  const journalOver = (publicClient: SendJournal["publicClient"], replaceAfterMs: number) =>
    createSendJournal({
      db: gw.app.db,
      publicClient,
      walletClient: gw.chain.walletClient,
      confirmations: 1,
      receiptTimeoutMs: 300,
      gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
      replaceAfterMs,
    });
  const transfer = (journal: SendJournal, key: string) =>
    sendOnce(journal, key, async () => ({
      to: gw.chain.contracts.testUsd,
      data: encodeFunctionData({
        abi: testUsdAbi,
        functionName: "transfer",
        args: [gw.chain.accounts[8]!.address, 1n],
      }),
    }));
  const notTakenSince = async (key: string) => {
    const [row] = await gw.app.db.query<{ not_taken_since: Date | null }>(
      "SELECT not_taken_since FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    return row?.not_taken_since;
  };

  it("past stalledAfterMs: a new send broadcasts it again, and goes on behind it once the node takes it", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const journal = journalOver(publicClient, 0);
    try {
      const stalled = await transfer(journal, "taken-again:stalled");
      expect(stalled).toMatchObject({ broadcast: "not_taken", nonce: refusing.nonce });
      if ("status" in stalled) throw new Error("the send was refused");
      // Refused a while, past the threshold, a pass between; then the node takes it again (its cap raised).
      await notTakenFor(["taken-again:stalled"], stalledAfterMsLeast + 1_000);
      await keepOpenSends(journal);
      refusing.on = false;
      // Before: refused rail_unavailable (final for a payout) on the mark alone, until the next pass broadcast it.
      const next = await transfer(journal, "taken-again:next");
      expect(next).toMatchObject({ broadcast: "taken", nonce: stalled.nonce + 1 });
      expect(await notTakenSince("taken-again:stalled")).toBeNull();
      // Its transaction as stored now: the pass replaced it (due at once, replaceAfterMs 0).
      const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
        [["taken-again:stalled", "taken-again:next"]],
      );
      await expectMined(sends);
    } finally {
      await keepOpenSends(journalOver(gw.chain.publicClient, 120_000));
    }
  });

  it("within stalledAfterMs, replaceAfterMs 0: one refusal refuses no new send", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const journal = journalOver(publicClient, 0);
    try {
      expect(await transfer(journal, "refused-once:first")).toMatchObject({
        broadcast: "not_taken",
        nonce: refusing.nonce,
      });
      // Before: refused rail_unavailable, the refusal a moment old (replaceAfterMs 0).
      const behind = await transfer(journal, "refused-once:behind");
      expect(behind).toMatchObject({ attempt_id: "refused-once:behind", nonce: refusing.nonce! + 1 });
    } finally {
      await keepOpenSends(journalOver(gw.chain.publicClient, 120_000));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [["refused-once:first", "refused-once:behind"]],
    );
    await expectMined(sends);
  });

  it("mined by another route: its mark is cleared by the next pass, not left until its gas is booked", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const journal = journalOver(publicClient, 120_000);
    const sent = await transfer(journal, "other-route:sent");
    expect(sent).toMatchObject({ broadcast: "not_taken", nonce: refusing.nonce });
    if ("status" in sent) throw new Error("the send was refused");
    // Its bytes broadcast by another route (another node, a person): mined, never broadcast by the journal again.
    await gw.chain.provider.request({ method: "eth_sendRawTransaction", params: [sent.raw_tx] } as never);
    await expectMined([sent]);
    expect(await notTakenSince("other-route:sent")).not.toBeNull();
    await keepOpenSends(journal);
    // Before: still marked, and (once past stalledAfterMs) every new send asked the node for the mined count.
    expect(await notTakenSince("other-route:sent")).toBeNull();
  });
});

describe("a send the node refuses for good", () => {
  it("is said at error level once past stalledAfterMs, and new sends are refused rail_unavailable until it is taken", async () => {
    const { refused, publicClient } = refusingOneNonce();
    const { logger, lines } = recordingLogger();
    const replaceAfterMs = 1_000;
    const journalOver = (client: SendJournal["publicClient"], log?: Logger) =>
      createSendJournal({
        db: gw.app.db,
        publicClient: client,
        walletClient: gw.chain.walletClient,
        confirmations: 1,
        receiptTimeoutMs: 300,
        gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
        replaceAfterMs,
        ...(log === undefined ? {} : { logger: log }),
      });
    const journal = journalOver(publicClient, logger);
    let prepared = 0;
    const transfer = (key: string, into: SendJournal = journal) =>
      sendOnce(into, key, async () => {
        prepared += 1;
        return {
          to: gw.chain.contracts.testUsd,
          data: encodeFunctionData({
            abi: testUsdAbi,
            functionName: "transfer",
            args: [gw.chain.accounts[8]!.address, 1n],
          }),
        };
      });
    const stuck = await transfer("refused-for-good:first");
    expect(stuck).toMatchObject({ broadcast: "not_taken", nonce: refused.nonce });
    const behind = await transfer("refused-for-good:behind"); // within replaceAfterMs: signed, behind it
    expect(behind).toMatchObject({ broadcast: "not_taken" });
    if ("status" in behind) throw new Error("the send behind was refused");
    try {
      await new Promise((resolve) => setTimeout(resolve, replaceAfterMs + 100));
      await notTakenFor(["refused-for-good:first", "refused-for-good:behind"], stalledAfterMsLeast + 1_000);
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      const of = (level: string) =>
        lines.filter((line) => line.level === level && line.fields.send === "refused-for-good:first");
      // Before: a warning at every broadcast, nothing more, for good.
      expect(of("warn")).toHaveLength(1);
      expect(of("error")).toHaveLength(1);
      expect(of("error")[0]!.message).toMatch(/not taken for longer than stalledAfterMs/);
      // Before: signed behind it and answered in flight, its reservation held for good.
      const signedBefore = prepared;
      expect(await transfer("refused-for-good:new")).toMatchObject({
        status: "failed",
        code: "rail_unavailable",
        message: expect.stringMatching(new RegExp(`nonce ${refused.nonce} .*not been taken`)),
      });
      expect(prepared).toBe(signedBefore);
      const payoutRefused = await anotherProcessRail(gw, { publicClient, replaceAfterMs }).execute(
        payout("att_refused_for_good_new", 1_000n),
      );
      expect(payoutRefused).toMatchObject({ status: "failed", code: "rail_unavailable" });
      expect(
        await gw.app.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = ANY($1)", [
          ["refused-for-good:new", "att_refused_for_good_new"],
        ]),
      ).toHaveLength(0);
      // A key sent before is followed as ever.
      expect(await transfer("refused-for-good:behind")).toMatchObject({ tx_hash: behind.tx_hash });
    } finally {
      // Taken at last (the cap raised): both mined, and new sends go again.
      await keepOpenSends(journalOver(gw.chain.publicClient));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}`; not_taken_since: Date | null }>(
      "SELECT tx_hash, not_taken_since FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [["refused-for-good:first", "refused-for-good:behind"]],
    );
    await expectMined(sends);
    expect(sends.map((send) => send.not_taken_since)).toEqual([null, null]);
    expect(await transfer("refused-for-good:after", journalOver(gw.chain.publicClient))).toMatchObject({
      broadcast: "taken",
    });
  });
});

/** A journal over the gateway's wallet as the tests of a stalled wallet have it; `db` the gateway's by default. */
const stallingJournal = (
  publicClient: SendJournal["publicClient"],
  replaceAfterMs: number,
  more: { db?: Db; logger?: Logger } = {},
) =>
  createSendJournal({
    db: more.db ?? gw.app.db,
    publicClient,
    walletClient: gw.chain.walletClient,
    confirmations: 1,
    receiptTimeoutMs: 300,
    gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
    replaceAfterMs,
    ...(more.logger === undefined ? {} : { logger: more.logger }),
  });

/** A token transfer of 1 under `key`; `prepared` counts the calls made (nothing is signed without one). */
function transferOf(journal: SendJournal, key: string, prepared: { count: number } = { count: 0 }) {
  return sendOnce(journal, key, async () => {
    prepared.count += 1;
    return {
      to: gw.chain.contracts.testUsd,
      data: encodeFunctionData({
        abi: testUsdAbi,
        functionName: "transfer",
        args: [gw.chain.accounts[8]!.address, 1n],
      }),
    };
  });
}

/**
 * Broadcasts `sent` again, as a pass would once the node takes it again (refused when the node holds it already), and
 * mines: a test's `finally` does it too, should an assertion stop the test first, since the nonce left open fails the
 * tests after it.
 */
async function broadcastLeftOpen(sent: Awaited<ReturnType<typeof transferOf>> | undefined): Promise<void> {
  if (sent !== undefined && !("status" in sent))
    await gw.chain.provider
      .request({ method: "eth_sendRawTransaction", params: [sent.raw_tx] } as never)
      .catch(() => undefined);
  await gw.chain.networkHelpers.mine(1);
}

describe("a fee bump the node refuses in other words than underpriced, the transaction it replaced in the pool", () => {
  /**
   * The chain, the first broadcast of the first nonce taken and every other of that nonce (a bump) refused as geth
   * refuses a fee above its rpc.txfeecap (or as `bumpRefusal` says), but those `accepted` holds; while `broke.on`, every
   * one of that nonce refused as geth refuses a wallet short of ETH for it (or as `broke.message` says). `refused` counts
   * the refusals, `asked` holds every transaction broadcast.
   */
  function refusingBumps() {
    const first: { nonce?: number; raw?: `0x${string}` } = {};
    const accepted = new Set<`0x${string}`>();
    const broke = {
      on: false,
      message: "insufficient funds for gas * price + value: balance 0, tx cost 1210000000000000",
    };
    const refused = { count: 0 };
    const bumpRefusal = {
      message: "tx fee (1.21 ether) exceeds the configured cap (1.00 ether)",
      code: -32000,
    };
    const asked: `0x${string}`[] = [];
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction") {
            const raw = (args.params as [`0x${string}`])[0];
            asked.push(raw);
            const { nonce } = parseTransaction(raw);
            if (first.nonce === undefined) Object.assign(first, { nonce, raw });
            else if (nonce === first.nonce && broke.on) {
              refused.count += 1;
              throw Object.assign(new Error(broke.message), { code: -32000 });
            } else if (nonce === first.nonce && raw !== first.raw && !accepted.has(raw)) {
              refused.count += 1;
              throw Object.assign(new Error(bumpRefusal.message), { code: bumpRefusal.code });
            }
          }
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    return { first, accepted, broke, refused, bumpRefusal, asked, publicClient };
  }

  /**
   * A replacement of `old` signed by the gateway's wallet at the fees given: the same nonce, recipient, data and gas, as
   * replaceIfStuck signs one.
   */
  function signedOver(
    old: ReturnType<typeof parseTransaction>,
    fees: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint },
  ) {
    return gw.chain.walletClient.signTransaction({
      account: gw.chain.walletClient.account!,
      chain: gw.chain.chain,
      type: "eip1559",
      nonce: old.nonce!,
      to: old.to!,
      data: old.data!,
      gas: old.gas!,
      ...fees,
    });
  }

  /** The next block's base fee `wei`, and that block mined (an empty one while the send's fee cap is below it). */
  async function minedAtBaseFee(wei: bigint) {
    await gw.chain.networkHelpers.setNextBlockBaseFeePerGas(wei);
    await gw.chain.networkHelpers.mine(1);
  }

  it("is taken: the nonce is held, and new sends go on behind it", async () => {
    const { first, publicClient } = refusingBumps();
    const { logger, lines } = recordingLogger();
    const journal = stallingJournal(publicClient, 0, { logger }); // replaceAfterMs 0: bumped at the next pass
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let next: Awaited<ReturnType<typeof transferOf>> | undefined;
    // Not automining: the first transaction waits in the pool, its nonce open.
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bump-refused:first");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      await keepOpenSends(journal); // bumped: the replacement signed and stored, and refused
      const hashes = await hashesOfSend(gw.app.db, sent);
      expect(hashes).toHaveLength(2);
      await expect(gw.chain.publicClient.getTransaction({ hash: hashes[1]! })).rejects.toThrow();
      // Before: taken with nothing said, and each pass signed a further bump over the refused one (12.5% more a pass).
      await keepOpenSends(journal);
      expect(await hashesOfSend(gw.app.db, sent)).toEqual(hashes);
      const warned = lines.filter((line) => line.level === "warn");
      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatchObject({
        message: expect.stringMatching(/replacement refused by the node/),
        fields: { send: "bump-refused:first", txHash: hashes[1], heldBy: sent.tx_hash },
      });
      // As if refused so past stalledAfterMs, had it been marked (before: marked, the node asked of the bump alone).
      await gw.app.db.query(
        `UPDATE evm_sends SET not_taken_since = not_taken_since - $2::int * interval '1 millisecond'
          WHERE attempt_id = $1`,
        ["bump-refused:first", stalledAfterMsLeast + 1_000],
      );
      // Before: refused rail_unavailable (final for a payout), the first transaction holding the nonce in the pool.
      next = await transferOf(journal, "bump-refused:next");
      expect(next).toMatchObject({
        attempt_id: "bump-refused:next",
        nonce: first.nonce! + 1,
        broadcast: "taken",
      });
      const [marked] = await gw.app.db.query<{ not_taken_since: Date | null }>(
        "SELECT not_taken_since FROM evm_sends WHERE attempt_id = $1",
        ["bump-refused:first"],
      );
      expect(marked?.not_taken_since).toBeNull();
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    // The first transaction mined (the send's receipt), and the one behind it.
    await expectMined([sent, next as { tx_hash: `0x${string}` }]);
  });

  it("leaves the send to the transaction it replaced: broadcast again once the pool drops it, the refused bump still the send's", async () => {
    const { first, publicClient } = refusingBumps();
    const journal = stallingJournal(publicClient, 0); // replaceAfterMs 0: bumped at the next pass
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let bumped: `0x${string}` | undefined;
    // Not automining: the first transaction waits in the pool, its nonce open.
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bump-refused:dropped");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      await keepOpenSends(journal); // bumped: the replacement signed and stored, and refused
      const hashes = await hashesOfSend(gw.app.db, sent);
      expect(hashes).toHaveLength(2);
      bumped = hashes[1]!;
      // Another process (or this one restarted), which never saw the bump refused: its bump is over the transaction the
      // node holds, not over the refused one (the same bytes, the fees as they were), refused and pointed back from too.
      const other = recordingLogger();
      await keepOpenSends(stallingJournal(publicClient, 0, { logger: other.logger }));
      expect(await hashesOfSend(gw.app.db, sent)).toEqual(hashes);
      expect(other.lines.filter((line) => line.level === "warn")).toMatchObject([
        {
          message: expect.stringMatching(/replacement refused by the node/),
          fields: { txHash: bumped, heldBy: sent.tx_hash },
        },
      ]);
      // The row is the transaction the node holds; the refused bump is kept among the send's (another node may have
      // taken it, and mine it).
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}` }>(
        "SELECT tx_hash, raw_tx FROM evm_sends WHERE attempt_id = $1",
        ["bump-refused:dropped"],
      );
      expect(row).toEqual({ tx_hash: sent.tx_hash, raw_tx: sent.raw_tx });
      expect(await sendHashesOf(gw.app.db, gw.chain.chain.id, bumped)).toEqual([sent.tx_hash, bumped]);
      // The pool drops it (evicted, the node restarted).
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      await expect(gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).rejects.toThrow();
      // Before: the refused bump's bytes broadcast again, refused again, nothing of the send in the pool: not taken,
      // pass after pass, and nothing ever broadcast the transaction the pool had.
      await keepOpenSends(journal);
      expect(await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).toMatchObject({
        hash: sent.tx_hash,
      });
      const [marked] = await gw.app.db.query<{ not_taken_since: Date | null }>(
        "SELECT not_taken_since FROM evm_sends WHERE attempt_id = $1",
        ["bump-refused:dropped"],
      );
      expect(marked?.not_taken_since).toBeNull();
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    // The transaction the pool had mined: the send's receipt, found by either hash.
    await expectMined([sent]);
    expect(await sendHashesOf(gw.app.db, gw.chain.chain.id, bumped!)).toEqual([sent.tx_hash, bumped]);
  });

  it("is the one refused when the pool had dropped the transaction it replaced: that one broadcast again, taken, and the send's, no bump over the refused one", async () => {
    const { first, publicClient } = refusingBumps();
    const { logger, lines } = recordingLogger();
    const journal = stallingJournal(publicClient, 0, { logger }); // replaceAfterMs 0: bumped at the next pass
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let bumped: `0x${string}` | undefined;
    // Not automining: the first transaction waits in the pool, its nonce open.
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bump-refused:dropped-before");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      // The pool drops it before any bump (the node restarted: why the send waits past replaceAfterMs).
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      await keepOpenSends(journal); // bumped: the replacement signed and stored, and refused
      const hashes = await hashesOfSend(gw.app.db, sent);
      expect(hashes).toHaveLength(2);
      bumped = hashes[1]!;
      // Before: the node holding neither, the bump was not taken, and nothing broadcast the transaction it replaced.
      expect(await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).toMatchObject({
        hash: sent.tx_hash,
      });
      const [row] = await gw.app.db.query<{
        tx_hash: `0x${string}`;
        raw_tx: `0x${string}`;
        not_taken_since: Date | null;
      }>("SELECT tx_hash, raw_tx, not_taken_since FROM evm_sends WHERE attempt_id = $1", [
        "bump-refused:dropped-before",
      ]);
      expect(row).toEqual({ tx_hash: sent.tx_hash, raw_tx: sent.raw_tx, not_taken_since: null });
      expect(await sendHashesOf(gw.app.db, gw.chain.chain.id, bumped)).toEqual([sent.tx_hash, bumped]);
      // Before: each pass signed a further bump over the refused one (12.5% more a pass), each refused.
      await keepOpenSends(journal);
      expect(await sendHashesOf(gw.app.db, gw.chain.chain.id, bumped)).toEqual([sent.tx_hash, bumped]);
      expect(lines.filter((line) => line.level === "warn")).toMatchObject([
        {
          message: expect.stringMatching(/replacement refused by the node .* broadcast again/),
          fields: { send: "bump-refused:dropped-before", txHash: bumped, heldBy: sent.tx_hash },
        },
      ]);
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    // The transaction broadcast again mined: the send's receipt, found by either hash.
    await expectMined([sent]);
  });

  it("when the pool had dropped them all, is left to the newest transaction of the send the node takes again, the older ones tried in turn", async () => {
    const { first, accepted, publicClient } = refusingBumps();
    const { logger, lines } = recordingLogger();
    const journal = stallingJournal(publicClient, 120_000, { logger }); // no bump due: the chain as it was left
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let firstBump: `0x${string}` | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bumps-refused:dropped-before");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      // Three bumps, each signed over the last and stored as replaceIfStuck stores one; the node refuses the last two
      // (a wallet that since pays only the first bump), takes the first and the transaction it replaced, and its pool
      // has dropped that one.
      let previous = { tx_hash: sent.tx_hash, raw_tx: sent.raw_tx };
      for (let bumps = 0; bumps < 3; bumps += 1) {
        const old = parseTransaction(previous.raw_tx);
        const raw = await signedOver(old, {
          maxFeePerGas: (old.maxFeePerGas! * 9n + 7n) / 8n,
          maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * 9n + 7n) / 8n,
        });
        await gw.app.db.query(
          "UPDATE evm_sends SET tx_hash = $2, raw_tx = $3, signed_at = now() WHERE attempt_id = $1",
          ["bumps-refused:dropped-before", keccak256(raw), raw],
        );
        await gw.app.db.query(
          "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)",
          ["bumps-refused:dropped-before", previous.tx_hash, previous.raw_tx],
        );
        previous = { tx_hash: keccak256(raw), raw_tx: raw };
        if (bumps === 0) {
          accepted.add(raw);
          firstBump = previous.tx_hash;
        }
      }
      const hashes = await hashesOfSend(gw.app.db, sent);
      expect(hashes).toHaveLength(4);
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      // Before: the newest refused, none known to the node, not taken, pass after pass.
      await keepOpenSends(journal);
      // The newest the node takes, not the oldest: the first bump, not the transaction it replaced.
      expect(await gw.chain.publicClient.getTransaction({ hash: firstBump! })).toMatchObject({
        hash: firstBump,
      });
      await expect(gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).rejects.toThrow();
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; not_taken_since: Date | null }>(
        "SELECT tx_hash, not_taken_since FROM evm_sends WHERE attempt_id = $1",
        ["bumps-refused:dropped-before"],
      );
      expect(row).toEqual({ tx_hash: firstBump, not_taken_since: null });
      // Every transaction of the send still its own.
      expect(new Set(await sendHashesOf(gw.app.db, gw.chain.chain.id, sent.tx_hash))).toEqual(
        new Set(hashes),
      );
      expect(lines.filter((line) => line.level === "warn")).toMatchObject([
        { fields: { send: "bumps-refused:dropped-before", txHash: previous.tx_hash, heldBy: firstBump } },
      ]);
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([{ tx_hash: firstBump! }]);
  });

  it.each([
    "insufficient funds for gas * price + value: balance 0, tx cost 1210000000000000", // geth
    "Upfront cost exceeds account balance", // Besu
    "transaction would cause overdraft", // geth 1.11–1.12, the wallet's other sends pending
  ])(
    "refused %s with every transaction it replaced (a wallet short of ETH for them all), the pool holding none: left to the one it was signed over, no bump compounded over the refused one",
    async (message) => {
      const { first, broke, publicClient } = refusingBumps();
      Object.assign(broke, { message });
      const key = `bump-refused:broke:${message.slice(0, 12)}`;
      const { logger, lines } = recordingLogger();
      const journal = stallingJournal(publicClient, 0, { logger }); // replaceAfterMs 0: bumped at every pass
      let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
      const sendRow = async () => {
        const [row] = await gw.app.db.query<{
          tx_hash: `0x${string}`;
          raw_tx: `0x${string}`;
          not_taken_since: Date | null;
        }>("SELECT tx_hash, raw_tx, not_taken_since FROM evm_sends WHERE attempt_id = $1", [key]);
        return row;
      };
      // Not automining: the first transaction waits in the pool, its nonce open.
      await setAutomine(false);
      try {
        sent = await transferOf(journal, key);
        expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
        if ("status" in sent) throw new Error("the send was refused");
        // The pool drops it (the node restarted), and the wallet has since no ETH for any transaction of the send.
        await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
        broke.on = true;
        await keepOpenSends(journal); // bumped: the replacement signed, stored and refused, and the one it replaced too
        const sentHash = sent.tx_hash;
        const [bumped] = (await hashesOfSend(gw.app.db, sent)).filter((hash) => hash !== sentHash);
        // Before: each pass past replaceAfterMs signed a further bump over the refused one (12.5% more a pass), each
        // refused, and the node took the newest once the wallet was topped up.
        await keepOpenSends(journal);
        await keepOpenSends(journal);
        expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(new Set([sent.tx_hash, bumped]));
        // The row is the transaction the bump was signed over, not taken; the refused bump is kept among the send's.
        expect(await sendRow()).toMatchObject({ tx_hash: sent.tx_hash, raw_tx: sent.raw_tx });
        expect((await sendRow())?.not_taken_since).not.toBeNull();
        expect(await sendHashesOf(gw.app.db, gw.chain.chain.id, bumped!)).toEqual([sent.tx_hash, bumped]);
        expect(
          lines.filter((line) => line.level === "info" && /signed over/.test(line.message)),
        ).toMatchObject([{ fields: { send: key, txHash: bumped, signedOver: sent.tx_hash } }]);
        // Another process (or this one restarted), which never saw the bump refused: its bump is over the transaction the
        // row points back at (the same bytes, the fees as they were), refused and pointed back from too.
        const other = recordingLogger();
        await keepOpenSends(stallingJournal(publicClient, 0, { logger: other.logger }));
        expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(new Set([sent.tx_hash, bumped]));
        expect(await sendRow()).toMatchObject({ tx_hash: sent.tx_hash, raw_tx: sent.raw_tx });
        // The wallet topped up: the transaction the row points back at is taken, at its fees.
        broke.on = false;
        await keepOpenSends(journal);
        expect(await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).toMatchObject({
          hash: sent.tx_hash,
        });
        expect(await sendRow()).toMatchObject({ tx_hash: sent.tx_hash, not_taken_since: null });
      } finally {
        broke.on = false;
        await setAutomine(true);
        await gw.chain.networkHelpers.mine(1);
      }
      await expectMined([sent]);
    },
  );

  /**
   * A long refusal as the code leaves it: three bumps over `sent`, signed while a lower cap left room for 10, 11 and 12%
   * over its fees (a bump cut back to the cap), each refused and kept among the send's, the row pointed back at `sent`
   * each time; the newest first. Each costs less than the 12.5% bump a pass signs over `sent` now, so only `sent`'s own
   * refusal, costing less than each, keeps them from being broadcast again in that pass.
   */
  async function refusedBumpsKept(key: string, sent: { raw_tx: `0x${string}` }) {
    const old = parseTransaction(sent.raw_tx);
    const bumps: { tx_hash: `0x${string}`; raw_tx: `0x${string}` }[] = [];
    for (const [at, percent] of [110n, 111n, 112n].entries()) {
      const raw = await signedOver(old, {
        // Rounded down, both: the tip stays within the fee cap as it was in `sent`.
        maxFeePerGas: (old.maxFeePerGas! * percent) / 100n,
        maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * percent) / 100n,
      });
      // A second apart, the newest last: the same now() for two would leave their order to the plan.
      await gw.app.db.query(
        `INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx, replaced_at)
         VALUES ($1, $2, $3, now() - $4::int * interval '1 second')`,
        [key, keccak256(raw), raw, 3 - at],
      );
      bumps.unshift({ tx_hash: keccak256(raw), raw_tx: raw });
    }
    return bumps;
  }

  it.each([
    ["risen to what the first offers", true],
    // Before: the dearest kept (12% over the first) was the bump of now, within a bump below it, and no bump the node
    // would take over the first was signed.
    ["flat", false],
  ])(
    "refused as costing too much through a long refusal, the fees %s: the bumps kept cost no call to broadcast again once a cheaper one is refused so",
    async (_fees, risen) => {
      const { first, broke, asked, publicClient } = refusingBumps();
      const key = `bumps-refused:broke:long:${risen ? "risen" : "flat"}`;
      const { logger, lines } = recordingLogger();
      const journal = stallingJournal(publicClient, 120_000, { logger }); // no bump due: the chain as it was left
      const baseFeeBefore = await readBaseFee(gw.chain.publicClient);
      const notAsked = () =>
        lines
          .filter((line) => line.level === "debug" && /not broadcast again/.test(line.message))
          .map((line) => line.fields);
      let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
      await setAutomine(false);
      try {
        sent = await transferOf(journal, key);
        expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
        if ("status" in sent) throw new Error("the send was refused");
        const bumps = await refusedBumpsKept(key, sent);
        // The pool drops it (the node restarted), and the wallet has since no ETH for any transaction of the send.
        await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
        broke.on = true;
        asked.length = 0;
        await keepOpenSends(journal);
        // Before: each bump broadcast again, costing more than the first one the node had just refused so.
        expect(asked).toEqual([sent.raw_tx]);
        // Said in one line for the three. Before, a line each.
        expect(notAsked()).toEqual([{ send: key, notAsked: 3 }]);
        // Another process, a bump due: signed over the first at the fees of now, refused; the first broadcast again (it
        // costs less), refused as well; none of the bumps before, which cost less than the one of now and more than the
        // first: its refusal, not the new bump's, is what spares them. The base fee risen to what the first offers, or
        // flat: none of them is the bump (keptBumpWithin), which offers 12.5% over the first at least, and they less.
        if (risen) {
          await minedAtBaseFee(parseTransaction(sent.raw_tx).maxFeePerGas!);
        }
        asked.length = 0;
        lines.length = 0;
        await keepOpenSends(stallingJournal(publicClient, 0, { logger }));
        const sentHash = sent.tx_hash;
        const hashes = await hashesOfSend(gw.app.db, sent);
        expect(hashes).toHaveLength(5);
        const bumpedNow = hashes.find(
          (hash) => hash !== sentHash && !bumps.some((bump) => bump.tx_hash === hash),
        );
        expect(asked.map((raw) => keccak256(raw))).toEqual([bumpedNow, sent.tx_hash]);
        const bumpedNowFee = parseTransaction(asked[0]!).maxFeePerGas!;
        for (const bump of bumps)
          expect(parseTransaction(bump.raw_tx).maxFeePerGas).toBeLessThan(bumpedNowFee);
        expect(notAsked()).toEqual([{ send: key, notAsked: 3 }]);
        // Every one kept among the send's (another node may have taken one), the row pointed back at the first.
        const replaced = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
          "SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1",
          [key],
        );
        expect(new Set(replaced.map((row) => row.tx_hash))).toEqual(
          new Set([bumpedNow, ...bumps.map((bump) => bump.tx_hash)]),
        );
        const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
          "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
          [key],
        );
        expect(row?.tx_hash).toBe(sent.tx_hash);
        // The wallet topped up: the first is taken again, at its fees.
        broke.on = false;
        await keepOpenSends(journal);
        expect(await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).toMatchObject({
          hash: sent.tx_hash,
        });
      } finally {
        broke.on = false;
        await setAutomine(true);
        await gw.chain.networkHelpers.setNextBlockBaseFeePerGas(baseFeeBefore);
        await broadcastLeftOpen(sent);
      }
      await expectMined([sent]);
    },
  );

  it("refused in other words than costing too much through a long refusal: every bump kept broadcast again, a costlier one may be taken", async () => {
    const { first, broke, asked, publicClient } = refusingBumps();
    Object.assign(broke, {
      message: "max fee per gas less than block base fee: address 0x0, maxFeePerGas: 1 baseFee: 2",
    });
    const key = "bumps-refused:fee-low:long";
    const journal = stallingJournal(publicClient, 120_000); // no bump due: the chain as it was left
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      const bumps = await refusedBumpsKept(key, sent);
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      broke.on = true;
      asked.length = 0;
      await keepOpenSends(journal);
      // A fee too low for one is no reason to refuse one offering more: each asked, the newest first.
      expect(asked).toEqual([sent.raw_tx, ...bumps.map((bump) => bump.raw_tx)]);
    } finally {
      broke.on = false;
      await setAutomine(true);
      await broadcastLeftOpen(sent);
    }
    await expectMined([sent]);
  });

  it("kept through a long refusal, the fees flat, the node asking 12.5% of a replacement: a new bump signed over the first and taken, none of those kept", async () => {
    const key = "bumps-kept:node-asks-a-bump";
    const asked: `0x${string}`[] = [];
    const first: { raw?: `0x${string}`; fees?: ReturnType<typeof parseTransaction> } = {};
    // The chain, refusing as underpriced a replacement of the first transaction broadcast that offers it less than
    // 12.5% more (as some nodes ask; geth and Hardhat ask 10%).
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction") {
            const raw = (args.params as [`0x${string}`])[0];
            asked.push(raw);
            const fees = parseTransaction(raw);
            if (first.fees === undefined) Object.assign(first, { raw, fees });
            else if (
              raw !== first.raw &&
              fees.nonce === first.fees.nonce &&
              (fees.maxFeePerGas! * 8n < first.fees.maxFeePerGas! * 9n ||
                fees.maxPriorityFeePerGas! * 8n < first.fees.maxPriorityFeePerGas! * 9n)
            )
              throw Object.assign(new Error("replacement transaction underpriced"), { code: -32000 });
          }
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    const sendRow = async () => {
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}` }>(
        "SELECT tx_hash, raw_tx FROM evm_sends WHERE attempt_id = $1",
        [key],
      );
      return row!;
    };
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let bumped: { tx_hash: `0x${string}`; raw_tx: `0x${string}` } | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(stallingJournal(publicClient, 120_000), key);
      expect(sent).toMatchObject({ broadcast: "taken" });
      if ("status" in sent) throw new Error("the send was refused");
      const bumps = await refusedBumpsKept(key, sent);
      // A bump due, the base fee as it was: the bump the fees ask is 12.5% over the first.
      asked.length = 0;
      await keepOpenSends(stallingJournal(publicClient, 0));
      bumped = await sendRow();
      const [before, after] = [parseTransaction(sent.raw_tx), parseTransaction(bumped.raw_tx)];
      // Before: the dearest kept (12%) broadcast again, refused as underpriced and left the send's, waiting as it is;
      // the next bump due over it, one the wallet may not pay for, and pointed back, the same one picked again.
      expect(after.maxFeePerGas! * 8n).toBeGreaterThanOrEqual(before.maxFeePerGas! * 9n);
      expect(after.maxPriorityFeePerGas! * 8n).toBeGreaterThanOrEqual(before.maxPriorityFeePerGas! * 9n);
      expect(asked).toEqual([bumped.raw_tx]);
      expect(await gw.chain.publicClient.getTransaction({ hash: bumped.tx_hash })).toMatchObject({
        hash: bumped.tx_hash,
      });
      // Those kept stay the send's (another node may hold one).
      const replaced = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1",
        [key],
      );
      expect(new Set(replaced.map((row) => row.tx_hash))).toEqual(
        new Set([sent.tx_hash, ...bumps.map((bump) => bump.tx_hash)]),
      );
    } finally {
      await setAutomine(true);
      await broadcastLeftOpen(sent);
    }
    await expectMined([bumped!]);
  });

  it.each([
    // A fee too low for the block (the base fee rose past it), every transaction of the send refused alike: a further
    // bump is what the node asks.
    ["max fee per gas less than block base fee: address 0x0, maxFeePerGas: 1 baseFee: 2", true],
    // From a node behind one that mined the bump (nonceTakenOnNode read the nonce open): the bump is the send's.
    ["nonce too low: address 0x0, tx: 0 state: 1", false],
  ])(
    "refused %s, the pool holding none of the send's: the row not pointed back, bumps not stopped",
    async (message, everyOne) => {
      const { first, bumpRefusal, broke, publicClient } = refusingBumps();
      Object.assign(bumpRefusal, { message });
      Object.assign(broke, { message });
      const { logger, lines } = recordingLogger();
      const journal = stallingJournal(publicClient, 0, { logger }); // replaceAfterMs 0: bumped at every pass
      const key = `bump-refused:not-costly:${message.slice(0, 12)}`;
      let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
      await setAutomine(false);
      try {
        sent = await transferOf(journal, key);
        expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
        if ("status" in sent) throw new Error("the send was refused");
        await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
        broke.on = everyOne;
        await keepOpenSends(journal); // bumped: the replacement signed, stored and refused
        const sentHash = sent.tx_hash;
        const [bumped] = (await hashesOfSend(gw.app.db, sent)).filter((hash) => hash !== sentHash);
        // Before: pointed back at the transaction the bump was signed over, as if the bump cost too much, and no bump
        // signed over that one within stalledAfterMs.
        const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; not_taken_since: Date | null }>(
          "SELECT tx_hash, not_taken_since FROM evm_sends WHERE attempt_id = $1",
          [key],
        );
        expect(row?.tx_hash).toBe(bumped);
        expect(row?.not_taken_since).not.toBeNull();
        expect(lines.filter((line) => line.level === "info" && /signed over/.test(line.message))).toEqual([]);
        await keepOpenSends(journal); // a further bump signed over the refused one
        expect(await hashesOfSend(gw.app.db, sent)).toHaveLength(3);
      } finally {
        broke.on = false;
        await setAutomine(true);
        await broadcastLeftOpen(sent);
      }
      await expectMined([sent]);
    },
  );

  it.each([
    ["nonce too high", -32000],
    ["exceeds block gas limit", -32000],
    ["intrinsic gas too low: have 21000, want 53000", -32000],
    ["rate limited", -32005], // viem's LimitExceededRpcError: the node says nothing of the transaction
  ])(
    "refused %s, the pool holding none of the send's: those it replaced not broadcast again, meeting the same",
    async (message, code) => {
      const { first, bumpRefusal, asked, publicClient } = refusingBumps();
      Object.assign(bumpRefusal, { message, code });
      const journal = stallingJournal(publicClient, 0); // replaceAfterMs 0: bumped at the next pass
      const key = `bump-refused:alike:${code}:${message.slice(0, 12)}`;
      let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
      await setAutomine(false);
      try {
        sent = await transferOf(journal, key);
        expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
        if ("status" in sent) throw new Error("the send was refused");
        await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
        asked.length = 0;
        await keepOpenSends(journal); // bumped: the replacement signed, stored and refused
        const hashes = await hashesOfSend(gw.app.db, sent);
        expect(hashes).toHaveLength(2);
        // Before: the one it replaced broadcast again in the same pass, for nothing (here the node would take it).
        const sentRaw = sent.raw_tx;
        expect(asked.filter((raw) => raw === sentRaw)).toEqual([]);
        const [row] = await gw.app.db.query<{ not_taken_since: Date | null }>(
          "SELECT not_taken_since FROM evm_sends WHERE attempt_id = $1",
          [key],
        );
        expect(row?.not_taken_since).not.toBeNull();
      } finally {
        await setAutomine(true);
        await broadcastLeftOpen(sent);
      }
      await expectMined([sent]);
    },
  );

  it("refused as costing too much, the one it replaced rate limited when broadcast again: the row left at the refused bump, no bump over it", async () => {
    const { first, limited, publicClient } = refusingBumpsLimited(
      "insufficient funds for gas * price + value: balance 0, tx cost 1210000000000000",
    );
    const journal = stallingJournal(publicClient, 0); // replaceAfterMs 0: bumped at every pass
    const key = "bump-refused:costly-limited";
    const sendRow = async () => {
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
        [key],
      );
      return row;
    };
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      // The pool drops it (the node restarted), and the node rate limits its broadcast again.
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      limited.on = true;
      await keepOpenSends(journal); // bumped: the replacement signed, stored and refused; the one it replaced limited
      const sentHash = sent.tx_hash;
      const [bumped] = (await hashesOfSend(gw.app.db, sent)).filter((hash) => hash !== sentHash);
      // Not pointed back: the one it replaced was not asked, and may be the one the node takes.
      expect((await sendRow())?.tx_hash).toBe(bumped);
      // Before: each pass past replaceAfterMs while the node limited signed a further bump over the refused one.
      await keepOpenSends(journal);
      await keepOpenSends(journal);
      expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(new Set([sent.tx_hash, bumped]));
      expect((await sendRow())?.tx_hash).toBe(bumped);
      // The limit lifted: the one it replaced broadcast again, taken, and the send's.
      limited.on = false;
      await keepOpenSends(journal);
      expect(await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash })).toMatchObject({
        hash: sent.tx_hash,
      });
      expect((await sendRow())?.tx_hash).toBe(sent.tx_hash);
      expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(new Set([sent.tx_hash, bumped]));
    } finally {
      limited.on = false;
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([sent]);
  });

  /**
   * refusingBumps, bumps refused as `refusal` says, and the send's first transaction, broadcast again while
   * `limited.on`, answered a rate limit (JSON-RPC's -32005): the node says nothing of it.
   */
  function refusingBumpsLimited(refusal: string) {
    const { first, bumpRefusal, publicClient: refusing } = refusingBumps();
    Object.assign(bumpRefusal, { message: refusal });
    const limited = { on: false };
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: (args: { method: string; params?: unknown }) => {
          if (
            limited.on &&
            args.method === "eth_sendRawTransaction" &&
            (args.params as [`0x${string}`])[0] === first.raw
          )
            throw Object.assign(new Error("rate limited"), { code: -32005 });
          return refusing.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    return { first, limited, publicClient };
  }

  it("refused as costing too much, the one it replaced rate limited, past replaceAfterMs: not bumped over at once by another process, signed_at moved on", async () => {
    const { first, limited, publicClient } = refusingBumpsLimited(
      "insufficient funds for gas * price + value: balance 0, tx cost 1210000000000000",
    );
    // replaceAfterMs as configured by default, as long as stalledAfterMs: another process goes by signed_at alone.
    const journal = stallingJournal(publicClient, stalledAfterMsLeast);
    const key = "bump-refused:costly-limited-due";
    const signedAgo = (ms: number) =>
      gw.app.db.query(
        "UPDATE evm_sends SET signed_at = now() - $2::int * interval '1 millisecond' WHERE attempt_id = $1",
        [key, ms],
      );
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      limited.on = true;
      await signedAgo(stalledAfterMsLeast + 1_000);
      await keepOpenSends(journal); // bumped: the replacement signed, stored and refused; the one it replaced limited
      const sentHash = sent.tx_hash;
      const hashes = new Set(await hashesOfSend(gw.app.db, sent));
      expect(hashes.size).toBe(2);
      // The time passes: the refused bump signed longer ago than replaceAfterMs, and refused again, the limit on.
      await signedAgo(stalledAfterMsLeast + 1_000);
      await keepOpenSends(journal);
      expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(hashes);
      // Another process (or this one restarted), which never saw the refusal. Before: the refused bump's signing past
      // replaceAfterMs, it signed a bump over it at once, refused as well (12.5% more each, at every process's pass).
      await keepOpenSends(stallingJournal(publicClient, stalledAfterMsLeast));
      expect(new Set(await hashesOfSend(gw.app.db, sent))).toEqual(hashes);
      // The limit lifted: the one it replaced broadcast again, taken, and the send's.
      limited.on = false;
      await keepOpenSends(journal);
      expect(await hashesOfSend(gw.app.db, sent)).toEqual([
        sent.tx_hash,
        ...[...hashes].filter((hash) => hash !== sentHash),
      ]);
    } finally {
      limited.on = false;
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([sent]);
  });

  it("refused in other words than costing too much, the one it replaced rate limited: bumped over at the next pass due", async () => {
    // A fee too low for the block, which a further bump answers: nothing holds it.
    const { first, limited, publicClient } = refusingBumpsLimited(
      "max fee per gas less than block base fee: address 0x0, maxFeePerGas: 1, baseFee: 2",
    );
    const journal = stallingJournal(publicClient, 0); // replaceAfterMs 0: bumped at every pass
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bump-refused:low-limited");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      await gw.chain.networkHelpers.dropTransaction(sent.tx_hash);
      limited.on = true;
      await keepOpenSends(journal); // bumped, refused; the one it replaced limited
      expect(await hashesOfSend(gw.app.db, sent)).toHaveLength(2);
      await keepOpenSends(journal); // bumped again over the refused one
      expect(await hashesOfSend(gw.app.db, sent)).toHaveLength(3);
      // The limit lifted: the first broadcast again once the bumps are refused, taken, and the send's.
      limited.on = false;
      await keepOpenSends(journal);
      expect((await hashesOfSend(gw.app.db, sent))[0]).toBe(sent.tx_hash);
    } finally {
      limited.on = false;
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([sent]);
  });

  it("pointed back at the transaction the node holds, is not bumped at once by another process: signed_at moved on", async () => {
    const { first, refused, publicClient } = refusingBumps();
    // No bump due in this process: the refused bump, signed an hour ago, is only broadcast again.
    const journal = stallingJournal(publicClient, 2 * 3_600_000);
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bump-refused:signed-at");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      // A bump signed an hour ago over the transaction in the pool, stored as replaceIfStuck stores one, and not
      // broadcast since (the node out of reach meanwhile).
      const old = parseTransaction(sent.raw_tx);
      const raw = await signedOver(old, {
        maxFeePerGas: (old.maxFeePerGas! * 9n + 7n) / 8n,
        maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * 9n + 7n) / 8n,
      });
      await gw.app.db.query(
        "UPDATE evm_sends SET tx_hash = $2, raw_tx = $3, signed_at = now() - interval '1 hour' WHERE attempt_id = $1",
        ["bump-refused:signed-at", keccak256(raw), raw],
      );
      await gw.app.db.query(
        "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)",
        ["bump-refused:signed-at", sent.tx_hash, sent.raw_tx],
      );
      await keepOpenSends(journal); // the bump refused, the row pointed back at the transaction in the pool
      const hashes = await hashesOfSend(gw.app.db, sent);
      expect(hashes).toEqual([sent.tx_hash, keccak256(raw)]);
      const refusedBefore = refused.count;
      // Another process, bumping past a minute: before, the row kept the refused bump's signing, an hour ago, and it
      // signed a bump over the one pointed back at at once, refused as well.
      const other = recordingLogger();
      await keepOpenSends(stallingJournal(publicClient, 60_000, { logger: other.logger }));
      expect(refused.count).toBe(refusedBefore);
      expect(other.lines.filter((line) => line.level === "warn")).toEqual([]);
      expect(await hashesOfSend(gw.app.db, sent)).toEqual(hashes);
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([sent]);
  });

  it("refused as costing too much pass after pass, the fees rising by less than a bump: the refused bump kept broadcast again, no new dearer one signed each pass, and taken once the node's cap is raised", async () => {
    const { first, accepted, asked, publicClient } = refusingBumps();
    const key = "bump-refused:kept-again";
    const baseFeeBefore = await readBaseFee(gw.chain.publicClient);
    const sendRow = async () => {
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
        [key],
      );
      return row;
    };
    const kept = () =>
      gw.app.db.query<{ tx_hash: `0x${string}`; raw_tx: `0x${string}` }>(
        "SELECT tx_hash, raw_tx FROM evm_sends_replaced WHERE attempt_id = $1",
        [key],
      );
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let bumped: { tx_hash: `0x${string}`; raw_tx: `0x${string}` } | undefined;
    // Not automining: the first transaction waits in the pool, its nonce open.
    await setAutomine(false);
    try {
      sent = await transferOf(stallingJournal(publicClient, 0), key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      const offered = parseTransaction(sent.raw_tx).maxFeePerGas!;
      // A pass a process, each past stalledAfterMs of the refusal (another process, or this one later), the base fee
      // four times what the send offers and rising a little at each: the bump the fees of each pass ask, 12.5% and more
      // over the send, is other bytes at each, dearer than the first by less than a bump. The node refused the first
      // by cost, and would refuse a dearer one as surely.
      for (const percent of [400n, 404n, 408n, 412n]) {
        await minedAtBaseFee((offered * percent) / 100n);
        asked.length = 0;
        await keepOpenSends(stallingJournal(publicClient, 0));
        // Refused, the row pointed back at the transaction the node holds, the refused bump kept among the send's.
        expect(await sendRow()).toEqual({ tx_hash: sent.tx_hash });
        const replaced = await kept();
        // Before: one more kept a pass, each a new, dearer bump, refused too (2 at the second pass).
        expect(replaced).toHaveLength(1);
        bumped ??= replaced[0]!;
        expect(replaced).toEqual([bumped]);
        expect(asked).toEqual([bumped.raw_tx]);
      }
      // The node's cap raised: the same bump, broadcast again at the next pass, is taken in place of the first.
      accepted.add(bumped!.raw_tx);
      await keepOpenSends(stallingJournal(publicClient, 0));
      expect(await sendRow()).toEqual({ tx_hash: bumped!.tx_hash });
      expect(await kept()).toEqual([{ tx_hash: sent.tx_hash, raw_tx: sent.raw_tx }]);
      expect(await gw.chain.publicClient.getTransaction({ hash: bumped!.tx_hash })).toMatchObject({
        hash: bumped!.tx_hash,
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.setNextBlockBaseFeePerGas(baseFeeBefore);
      await broadcastLeftOpen(sent);
    }
    // The bump mined, the send's one receipt: the transaction it replaced never is.
    await expectMined([bumped!]);
    expect(
      await finalReceiptOf(stallingJournal(publicClient, 0), { attempt_id: key, tx_hash: sent.tx_hash }),
    ).toMatchObject({
      transactionHash: bumped!.tx_hash,
    });
    await expect(gw.chain.publicClient.getTransactionReceipt({ hash: sent.tx_hash })).rejects.toThrow();
  });

  it("refused as costing too much, the fees fallen by less than a bump since: a new bump at the fees of now, not the dearer one kept", async () => {
    const { first, asked, publicClient } = refusingBumps();
    const key = "bump-refused:kept-dearer";
    const baseFeeBefore = await readBaseFee(gw.chain.publicClient);
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    await setAutomine(false);
    try {
      sent = await transferOf(stallingJournal(publicClient, 0), key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      const offered = parseTransaction(sent.raw_tx).maxFeePerGas!;
      const maxFees: bigint[] = [];
      // The base fee four, then 3.8 times what the send offers: the second pass's bump costs about 5% less, less than a
      // bump. A node refusing the first by cost (a wallet short of ETH for it) refuses it again, and may take the
      // cheaper one, which is asked.
      for (const percent of [400n, 380n]) {
        await minedAtBaseFee((offered * percent) / 100n);
        asked.length = 0;
        await keepOpenSends(stallingJournal(publicClient, 0));
        expect(asked).toHaveLength(1);
        maxFees.push(parseTransaction(asked[0]!).maxFeePerGas!);
      }
      // Before: the first, dearer bump broadcast again at the second pass.
      expect(maxFees[1]!).toBeLessThan(maxFees[0]!);
      expect(maxFees[1]! * 9n).toBeGreaterThan(maxFees[0]! * 8n);
      const kept = await gw.app.db.query("SELECT 1 FROM evm_sends_replaced WHERE attempt_id = $1", [key]);
      expect(kept).toHaveLength(2);
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.setNextBlockBaseFeePerGas(baseFeeBefore);
      await broadcastLeftOpen(sent);
    }
    await expectMined([sent]);
  });

  it("refused as costing too much, two bumps kept within a bump below the fees of now: the dearer broadcast again, no new one signed", async () => {
    const { first, accepted, asked, publicClient } = refusingBumps();
    const key = "bump-refused:kept-two";
    const baseFeeBefore = await readBaseFee(gw.chain.publicClient);
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    const kept: { tx_hash: `0x${string}`; raw_tx: `0x${string}` }[] = [];
    await setAutomine(false);
    try {
      sent = await transferOf(stallingJournal(publicClient, 120_000), key);
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      const old = parseTransaction(sent.raw_tx);
      // The base fee four times what the send offers (it waits in the pool below it): the fees ask twice that and the
      // tip, and a bump's tip is 12.5% over the send's.
      await minedAtBaseFee(old.maxFeePerGas! * 4n);
      const asks = 2n * (await readBaseFee(gw.chain.publicClient)) + 1_000_000_000n;
      // Two bumps signed when the fees asked 95% and 98% of that, refused by cost and kept, the cheaper first; the
      // node's cap raised since, for either.
      for (const [at, percent] of [95n, 98n].entries()) {
        const raw = await signedOver(old, {
          maxFeePerGas: (asks * percent) / 100n,
          maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * 9n + 7n) / 8n,
        });
        await gw.app.db.query(
          `INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx, replaced_at)
           VALUES ($1, $2, $3, now() - $4::int * interval '1 second')`,
          [key, keccak256(raw), raw, 2 - at],
        );
        accepted.add(raw);
        kept.push({ tx_hash: keccak256(raw), raw_tx: raw });
      }
      const [cheaper, dearer] = kept as [(typeof kept)[0], (typeof kept)[0]];
      asked.length = 0;
      await keepOpenSends(stallingJournal(publicClient, 0));
      // The dearer of the two, the nearer to what the fees ask: not the cheaper, nor a new one.
      expect(asked).toEqual([dearer.raw_tx]);
      const [row] = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
        [key],
      );
      expect(row?.tx_hash).toBe(dearer.tx_hash);
      const replaced = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
        "SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1",
        [key],
      );
      expect(new Set(replaced.map((replacedRow) => replacedRow.tx_hash))).toEqual(
        new Set([sent.tx_hash, cheaper.tx_hash]),
      );
      expect(await gw.chain.publicClient.getTransaction({ hash: dearer.tx_hash })).toMatchObject({
        hash: dearer.tx_hash,
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.setNextBlockBaseFeePerGas(baseFeeBefore);
      await broadcastLeftOpen(sent);
    }
    await expectMined([kept[1]!]);
  });

  it("is taken behind more refused bumps than 8, as the code before signed them: every transaction of the send asked", async () => {
    const { first, publicClient } = refusingBumps();
    const { logger, lines } = recordingLogger();
    const journal = stallingJournal(publicClient, 120_000, { logger }); // no bump due: the chain as it was left
    let sent: Awaited<ReturnType<typeof transferOf>> | undefined;
    let next: Awaited<ReturnType<typeof transferOf>> | undefined;
    // Not automining: the first transaction waits in the pool, its nonce open.
    await setAutomine(false);
    try {
      sent = await transferOf(journal, "bumps-refused:first");
      expect(sent).toMatchObject({ broadcast: "taken", nonce: first.nonce });
      if ("status" in sent) throw new Error("the send was refused");
      // Ten bumps, each signed over the last and stored as replaceIfStuck stores one, none ever taken by the node.
      let previous = { tx_hash: sent.tx_hash, raw_tx: sent.raw_tx };
      for (let bumps = 0; bumps < 10; bumps += 1) {
        const old = parseTransaction(previous.raw_tx);
        const raw = await signedOver(old, {
          maxFeePerGas: (old.maxFeePerGas! * 9n + 7n) / 8n,
          maxPriorityFeePerGas: (old.maxPriorityFeePerGas! * 9n + 7n) / 8n,
        });
        await gw.app.db.query(
          "UPDATE evm_sends SET tx_hash = $2, raw_tx = $3, signed_at = now() WHERE attempt_id = $1",
          ["bumps-refused:first", keccak256(raw), raw],
        );
        await gw.app.db.query(
          "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) VALUES ($1, $2, $3)",
          ["bumps-refused:first", previous.tx_hash, previous.raw_tx],
        );
        previous = { tx_hash: keccak256(raw), raw_tx: raw };
      }
      expect(await hashesOfSend(gw.app.db, sent)).toHaveLength(11);
      // Before: the newest 8 asked, none known, and the send marked not taken while the first held the nonce.
      await keepOpenSends(journal);
      expect(lines.filter((line) => line.level === "warn")).toMatchObject([
        {
          message: expect.stringMatching(/replacement refused by the node/),
          fields: { send: "bumps-refused:first", txHash: previous.tx_hash, heldBy: sent.tx_hash },
        },
      ]);
      await gw.app.db.query(
        `UPDATE evm_sends SET not_taken_since = not_taken_since - $2::int * interval '1 millisecond'
          WHERE attempt_id = $1`,
        ["bumps-refused:first", stalledAfterMsLeast + 1_000],
      );
      // Before: refused rail_unavailable, the send marked past stalledAfterMs.
      next = await transferOf(journal, "bumps-refused:next");
      expect(next).toMatchObject({
        attempt_id: "bumps-refused:next",
        nonce: first.nonce! + 1,
        broadcast: "taken",
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    // The first transaction mined (the send's receipt), and the one behind it.
    await expectMined([sent, next as { tx_hash: `0x${string}` }]);
  });
});

/** The chain as refusingOneNonceFor has it, every call to the node counted by its method. */
function countedRefusingOneNonce() {
  const { refusing, publicClient: refusingClient } = refusingOneNonceFor();
  const calls: string[] = [];
  const publicClient = createPublicClient({
    chain: gw.chain.chain,
    transport: custom({
      request: (args: { method: string; params?: unknown }) => {
        calls.push(args.method);
        return refusingClient.request(args as never);
      },
    }),
    pollingInterval: 50,
  });
  return { refusing, publicClient, calls };
}

describe("new keys while the wallet is stalled", () => {
  it("are answered the last refusal for a few seconds, the node not asked again; go on at once once the send is taken", async () => {
    const { refusing, publicClient, calls } = countedRefusingOneNonce();
    const journal = stallingJournal(publicClient, 0);
    const prepared = { count: 0 };
    try {
      expect(await transferOf(journal, "held-refusal:stuck")).toMatchObject({
        broadcast: "not_taken",
        nonce: refusing.nonce,
      });
      await notTakenFor(["held-refusal:stuck"], stalledAfterMsLeast + 1_000);
      const stalled = {
        status: "failed",
        code: "rail_unavailable",
        message: expect.stringMatching(new RegExp(`nonce ${refusing.nonce} .*not been taken`)),
      };
      const askedBefore = calls.length;
      expect(await transferOf(journal, "held-refusal:first", prepared)).toMatchObject(stalled);
      expect(calls.slice(askedBefore)).toContain("eth_sendRawTransaction"); // broadcast again, refused again
      const askedFirst = calls.length;
      // Before: asked the node again (its mined count, the broadcast, its mined count and the transaction), each key.
      expect(await transferOf(journal, "held-refusal:second", prepared)).toMatchObject(stalled);
      expect(calls.slice(askedFirst)).toEqual([]);
      expect(prepared.count).toBe(0);
      // Taken (the node's cap raised), by this process's pass: new keys go on at once, not a few seconds later.
      refusing.on = false;
      await keepOpenSends(journal);
      expect(await transferOf(journal, "held-refusal:after", prepared)).toMatchObject({ broadcast: "taken" });
    } finally {
      refusing.on = false;
      await keepOpenSends(stallingJournal(gw.chain.publicClient, 120_000));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [["held-refusal:stuck", "held-refusal:after"]],
    );
    expect(sends).toHaveLength(2);
    await expectMined(sends);
  });
});

describe("a refusal held while another send of the wallet is marked too", () => {
  /** A send stuck at the refused nonce and one signed behind it, both not taken past stalledAfterMsLeast. */
  async function stalledTwice(journal: SendJournal, refusing: { nonce?: number }, prefix: string) {
    const stuck = await transferOf(journal, `${prefix}:stuck`);
    expect(stuck).toMatchObject({ broadcast: "not_taken", nonce: refusing.nonce });
    // Signed behind it before it stalled the wallet, and not taken either (a nonce past the pending one).
    expect(await transferOf(journal, `${prefix}:behind`)).toMatchObject({ broadcast: "not_taken" });
    await notTakenFor([`${prefix}:stuck`, `${prefix}:behind`], stalledAfterMsLeast + 1_000);
    expect(await transferOf(journal, `${prefix}:refused`)).toMatchObject({
      status: "failed",
      code: "rail_unavailable",
      message: expect.stringMatching(new RegExp(`nonce ${refusing.nonce} .*not been taken`)),
    });
  }

  it("is not answered once another process's broadcast of its send cleared that send's mark", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const journal = stallingJournal(publicClient, 120_000);
    try {
      await stalledTwice(journal, refusing, "held-cleared");
      // Another process's broadcast of the stuck send taken: its mark cleared there, the one behind it marked still.
      await gw.app.db.query(
        "UPDATE evm_sends SET not_taken_since = NULL, not_taken_said = false WHERE attempt_id = $1",
        ["held-cleared:stuck"],
      );
      // Before: answered the refusal held here for 5 s (the wallet's other long mark kept it), citing a send taken.
      expect(await transferOf(journal, "held-cleared:next")).toMatchObject({
        attempt_id: "held-cleared:next",
        nonce: refusing.nonce! + 2,
      });
    } finally {
      refusing.on = false;
      await keepOpenSends(stallingJournal(gw.chain.publicClient, 120_000));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [["held-cleared:stuck", "held-cleared:behind", "held-cleared:next"]],
    );
    expect(sends).toHaveLength(3);
    await expectMined(sends);
  });

  it("is let go by this process's broadcast of its send taken, though the database fails to clear its mark", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const base = gw.app.db;
    const failing: Db = {
      ...base,
      query: (text, params) =>
        text.includes("WHERE attempt_id = $1 AND not_taken_since IS NOT NULL")
          ? Promise.reject(new Error("Connection terminated unexpectedly"))
          : base.query(text, params),
    };
    const journal = stallingJournal(publicClient, 120_000, { db: failing });
    try {
      await stalledTwice(journal, refusing, "held-taken");
      // Taken at last (the node's cap raised), by this process's pass; the marks left set by the database.
      refusing.on = false;
      await keepOpenSends(journal);
      const [marked] = await base.query<{ not_taken_since: Date | null }>(
        "SELECT not_taken_since FROM evm_sends WHERE attempt_id = $1",
        ["held-taken:stuck"],
      );
      expect(marked?.not_taken_since).not.toBeNull();
      // New keys go on at once, not answered the refusal held for a send taken.
      expect(await transferOf(journal, "held-taken:next")).toMatchObject({
        attempt_id: "held-taken:next",
        broadcast: "taken",
      });
    } finally {
      refusing.on = false;
      await keepOpenSends(stallingJournal(gw.chain.publicClient, 120_000));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
      [["held-taken:stuck", "held-taken:behind", "held-taken:next"]],
    );
    expect(sends).toHaveLength(3);
    await expectMined(sends);
  });
});

describe("not-taken marks the database fails to clear", () => {
  it("fail neither the pass nor a new send: said as a warning", async () => {
    const { refusing, publicClient } = refusingOneNonceFor();
    const base = gw.app.db;
    const failing: Db = {
      ...base,
      query: (text, params) =>
        text.includes("nonce < $3 AND NOT gas_done AND not_taken_since IS NOT NULL")
          ? Promise.reject(new Error("Connection terminated unexpectedly"))
          : base.query(text, params),
    };
    const { logger, lines } = recordingLogger();
    const journal = stallingJournal(publicClient, 120_000, { db: failing, logger });
    try {
      expect(await transferOf(journal, "forget-fails:stuck")).toMatchObject({
        broadcast: "not_taken",
        nonce: refusing.nonce,
      });
      await notTakenFor(["forget-fails:stuck"], stalledAfterMsLeast + 1_000);
      // Before: both threw the database's error, the pass and the payout failed by what only spares later looks.
      await expect(keepOpenSends(journal)).resolves.toBeGreaterThanOrEqual(1);
      expect(await transferOf(journal, "forget-fails:new")).toMatchObject({
        status: "failed",
        code: "rail_unavailable",
      });
      const warned = lines.filter((line) => line.level === "warn" && /not cleared/.test(line.message));
      expect(warned).toHaveLength(2);
    } finally {
      refusing.on = false;
      await keepOpenSends(stallingJournal(gw.chain.publicClient, 120_000));
    }
    const sends = await gw.app.db.query<{ tx_hash: `0x${string}` }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
      ["forget-fails:stuck"],
    );
    await expectMined(sends);
  });
});

describe("an approve of the splitter not taken", () => {
  it("is the only one signed: a second payout needing it follows it, refused until it is mined", async () => {
    const { contracts, walletClient } = gw.chain;
    // No allowance left: each split payout needs the approve.
    await walletClient.writeContract({
      account: walletClient.account,
      chain: walletClient.chain,
      address: contracts.testUsd,
      abi: testUsdAbi,
      functionName: "approve",
      args: [contracts.splitter, 0n],
    });
    const split = await gw.createSplit([gw.chain.accounts[5]!.address], [10_000]);
    const toSplit = (id: string): OutgoingAttempt => ({
      ...payout(id, 1_000n),
      destination: { kind: "evm_split", splitId: split.splitId },
    });
    const refusingApproves = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction") {
            const signed = parseTransaction((args.params as [`0x${string}`])[0]);
            if (signed.data?.startsWith("0x095ea7b3"))
              throw Object.assign(new Error("tx fee (1.21 ether) exceeds the configured cap (1.00 ether)"), {
                code: -32000,
              });
          }
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    const rail = anotherProcessRail(gw, { publicClient: refusingApproves, receiptTimeoutMs: 300 });
    for (const id of ["att_approve_once_1", "att_approve_once_2"])
      expect(await rail.execute(toSplit(id))).toMatchObject({ status: "failed", code: "rail_unavailable" });
    const signed = () =>
      gw.app.db.query<{ attempt_id: string; nonce: number }>(
        "SELECT attempt_id, nonce FROM evm_sends WHERE attempt_id = ANY($1) ORDER BY nonce",
        [["approve:att_approve_once_1", "approve:att_approve_once_2", "approve:att_approve_once_3"]],
      );
    // Before: the second payout signed a max approve of its own at the next nonce.
    expect((await signed()).map((row) => row.attempt_id)).toEqual(["approve:att_approve_once_1"]);
    // The node takes it at last: the next payout follows that approve, mined, and pays.
    expect(await anotherProcessRail(gw).execute(toSplit("att_approve_once_3"))).toMatchObject({
      status: "succeeded",
    });
    expect((await signed()).map((row) => row.attempt_id)).toEqual(["approve:att_approve_once_1"]);
  });
});

describe("a broadcast refused as underpriced while the database does not answer", () => {
  it("asks the node, as any refusal: not taken, nothing thrown", async () => {
    const refusing = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: async (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction")
            throw Object.assign(new Error("replacement transaction underpriced"), { code: -32000 });
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    const base = gw.app.db;
    const db: Db = {
      ...base,
      query: (text, params) =>
        text.includes("evm_sends_replaced WHERE attempt_id = $1 LIMIT 1")
          ? Promise.reject(new Error("Connection terminated unexpectedly"))
          : base.query(text, params),
    };
    const journalOver = (over: Db, publicClient: SendJournal["publicClient"]) =>
      createSendJournal({
        db: over,
        publicClient,
        walletClient: gw.chain.walletClient,
        confirmations: 1,
        receiptTimeoutMs: 300,
        gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
        replaceAfterMs: 120_000,
      });
    const sent = sendOnce(journalOver(db, refusing), "underpriced-db-down", async () => ({
      to: gw.chain.contracts.testUsd,
      data: encodeFunctionData({
        abi: testUsdAbi,
        functionName: "approve",
        args: ["0x000000000000000000000000000000000000dEaD", 2n],
      }),
    }));
    // Before: the database's error went up from the broadcast (through a payout, a 500 with the send journaled).
    await expect(sent).resolves.toMatchObject({ broadcast: "not_taken" });
    await keepOpenSends(journalOver(base, gw.chain.publicClient));
    await expectMined([(await sent) as { tx_hash: `0x${string}` }]);
  });
});

describe("a send signed by another wallet, the hot wallet's key rotated since", () => {
  /** A wallet of its own key (the same every run, `seed`'s) holding ETH for gas, on the test chain. */
  async function walletOf(seed: string) {
    const account = privateKeyToAccount(keccak256(stringToHex(seed)));
    await gw.chain.networkHelpers.setBalance(account.address, 10n ** 18n);
    const transport = custom({
      request: (args: { method: string; params?: unknown }) => gw.chain.provider.request(args as never),
    });
    return createWalletClient({ account, chain: gw.chain.chain, transport });
  }
  /** A journal signing with `walletClient` on the gateway's database, every send due for replacement at once. */
  const journalOf = (
    walletClient: SendJournal["walletClient"],
    priorityFeeWei: bigint,
    logger?: Logger,
    publicClient: SendJournal["publicClient"] = gw.chain.publicClient,
  ) =>
    createSendJournal({
      db: gw.app.db,
      publicClient,
      walletClient,
      confirmations: 1,
      receiptTimeoutMs: 300,
      gas: { priorityFeeWei, maxFeeWei: 200_000_000_000n },
      replaceAfterMs: 0,
      ...(logger === undefined ? {} : { logger }),
    });
  /** Approving nothing to a payee under `key`; `prepared` counts the calls made (nothing is signed without one). */
  const approveNothing = (journal: SendJournal, key: string, prepared = { count: 0 }) =>
    sendOnce(journal, key, async () => {
      prepared.count += 1;
      return {
        to: gw.chain.contracts.testUsd,
        data: encodeFunctionData({
          abi: testUsdAbi,
          functionName: "approve",
          args: [gw.chain.accounts[7]!.address, 0n],
        }),
      };
    });
  const rowOf = async (key: string) => {
    const [row] = await gw.app.db.query<{ tx_hash: `0x${string}`; nonce: number }>(
      "SELECT tx_hash, nonce FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    const replaced = await gw.app.db.query("SELECT tx_hash FROM evm_sends_replaced WHERE attempt_id = $1", [
      key,
    ]);
    return { ...row!, replaced };
  };
  const countsOf = async (wallet: WalletClient) =>
    Promise.all(
      (["latest", "pending"] as const).map((blockTag) =>
        gw.chain.publicClient.getTransactionCount({ address: wallet.account!.address, blockTag }),
      ),
    );

  it("open, its key sent again: broadcast again as it is, never replaced by the new wallet's key; said once", async () => {
    const key = "approve:signed-before-rotation:open";
    const { logger, lines } = recordingLogger();
    // The hot wallet's send at a tip of 1 wei, waiting in the pool: one the new wallet's policy (1 gwei) would bump.
    const before = journalOf(gw.chain.walletClient, 1n);
    const rotated = await walletOf("the hot wallet rotated to, an open send of the old one");
    const after = journalOf(rotated, 1_000_000_000n, logger);
    await setAutomine(false);
    let first: Awaited<ReturnType<typeof approveNothing>> | undefined;
    try {
      first = await approveNothing(before, key);
      expect(first).toMatchObject({ attempt_id: key, broadcast: "taken" });
      const countsBefore = await countsOf(rotated);
      const prepared = { count: 0 };
      // Sent again twice (a payout's recovery does): its stored send, broadcast again, both times.
      for (let again = 0; again < 2; again += 1)
        expect(await approveNothing(after, key, prepared)).toMatchObject({
          attempt_id: key,
          tx_hash: (first as { tx_hash: string }).tx_hash,
          broadcast: "taken",
        });
      expect(prepared.count).toBe(0);
      // Before: a replacement signed by the new wallet at the old one's nonce, the row pointing at it.
      expect(await rowOf(key)).toMatchObject({
        tx_hash: (first as { tx_hash: string }).tx_hash,
        replaced: [],
      });
      expect(await countsOf(rotated)).toEqual(countsBefore);
      const warned = lines.filter((line) => line.level === "warn");
      expect(warned).toHaveLength(1);
      expect(warned[0]!.fields).toMatchObject({
        send: key,
        signedBy: gw.chain.walletClient.account.address.toLowerCase(),
        hotWallet: rotated.account.address.toLowerCase(),
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([first as { tx_hash: `0x${string}` }]);
    expect(await countsOf(rotated)).toEqual([0, 0]);
  });

  it("open, its broadcast lost and its key never sent again: broadcast again as it is by the new wallet's keeper, said once", async () => {
    const key = "approve:signed-before-rotation:lost";
    const retired = await walletOf("the hot wallet rotated from, its broadcast lost");
    const rotated = await walletOf("the hot wallet rotated to, a lost send of the old one");
    const countsBefore = await countsOf(rotated);
    const { logger, lines } = recordingLogger();
    const keeper = journalOf(rotated, 1_000_000_000n, logger);
    // Signed and journaled by the old wallet, then lost by the node (a crash before the broadcast, a node restarted).
    await setAutomine(false);
    let lost: `0x${string}`;
    try {
      const sent = await approveNothing(journalOf(retired, 1_000_000_000n), key);
      expect(sent).toMatchObject({ attempt_id: key, broadcast: "taken" });
      lost = (sent as { tx_hash: `0x${string}` }).tx_hash;
      await gw.chain.networkHelpers.dropTransaction(lost);
      // Before: the keeper read the new wallet's open sends alone, and this one stayed unmined for good. Broadcast
      // again at each pass while open, and said once.
      for (let pass = 0; pass < 2; pass += 1) {
        expect(await keepOpenSends(keeper)).toBeGreaterThanOrEqual(1);
        expect(await gw.chain.publicClient.getTransaction({ hash: lost })).toMatchObject({ hash: lost });
      }
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.mine(1);
    expect(await gw.chain.publicClient.getTransactionReceipt({ hash: lost })).toMatchObject({
      status: "success",
      from: retired.account.address.toLowerCase(),
    });
    // As it was signed: no transaction of the new wallet, nothing replaced.
    expect(await rowOf(key)).toMatchObject({ tx_hash: lost, replaced: [] });
    expect(await countsOf(rotated)).toEqual(countsBefore);
    const said = lines.filter((line) => line.level === "warn" && line.fields.send === key);
    expect(said).toHaveLength(1);
    expect(said[0]!.fields).toMatchObject({
      signedBy: retired.account.address.toLowerCase(),
      hotWallet: rotated.account.address.toLowerCase(),
    });
  });

  it("open, of a wallet drained since: only its lowest open send is asked of the node a pass, until it has the ETH", async () => {
    const keys = ["approve:signed-before-rotation:drained-0", "approve:signed-before-rotation:drained-1"];
    const retired = await walletOf("the hot wallet rotated from, drained with two sends open");
    const rotated = await walletOf("the hot wallet rotated to, the old one drained");
    const sent: `0x${string}`[] = [];
    await setAutomine(false);
    try {
      for (const key of keys) {
        const send = await approveNothing(journalOf(retired, 1_000_000_000n), key);
        expect(send).toMatchObject({ attempt_id: key, broadcast: "taken" });
        sent.push((send as { tx_hash: `0x${string}` }).tx_hash);
      }
      for (const hash of sent) await gw.chain.networkHelpers.dropTransaction(hash);
    } finally {
      await setAutomine(true);
    }
    await gw.chain.networkHelpers.setBalance(retired.account.address, 0n);
    // The new wallet's keeper, counting the transactions it hands the node.
    const broadcasts: string[] = [];
    const counting = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction") broadcasts.push((args.params as [string])[0]);
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    const keeper = journalOf(rotated, 1_000_000_000n, undefined, counting);
    const [lowest, behind] = await Promise.all(
      keys.map(async (key) => {
        const [row] = await gw.app.db.query<{ raw_tx: string }>(
          "SELECT raw_tx FROM evm_sends WHERE attempt_id = $1",
          [key],
        );
        return row!.raw_tx;
      }),
    );
    for (let pass = 0; pass < 2; pass += 1) {
      broadcasts.length = 0;
      await keepOpenSends(keeper);
      expect(broadcasts).toContain(lowest);
      // Before: the one behind it too, each pass, refused alike.
      expect(broadcasts).not.toContain(behind);
    }
    await expect(gw.chain.publicClient.getTransactionReceipt({ hash: sent[0]! })).rejects.toThrow();
    // Given the ETH, both are mined, in turn, by the keeper's passes.
    await gw.chain.networkHelpers.setBalance(retired.account.address, 10n ** 18n);
    await keepOpenSends(keeper);
    await keepOpenSends(keeper);
    await expectMined(sent.map((tx_hash) => ({ tx_hash })));
  });

  it.each([
    ["its wallet written", "mined", false],
    [
      "its wallet NULL (journaled before evm migration 0011): its signer read from its bytes",
      "mined-null",
      true,
    ],
  ])(
    "mined, %s, its key sent again: its stored send, no transaction of the new wallet kept among its own",
    async (_, name, walletNull) => {
      const key = `approve:signed-before-rotation:${name}`;
      const first = await approveNothing(journalOf(gw.chain.walletClient, 1n), key);
      expect(first).toMatchObject({ attempt_id: key, broadcast: "taken" });
      await expectMined([first as { tx_hash: `0x${string}` }]);
      if (walletNull)
        await gw.app.db.query("UPDATE evm_sends SET wallet = NULL WHERE attempt_id = $1", [key]);
      const rotated = await walletOf("the hot wallet rotated to, a mined send of the old one");
      const countsBefore = await countsOf(rotated);
      // Before: a bump signed by the new wallet, refused by the node (a nonce past its own), kept among the send's.
      expect(await approveNothing(journalOf(rotated, 1_000_000_000n), key)).toMatchObject({
        tx_hash: (first as { tx_hash: string }).tx_hash,
        broadcast: "taken",
      });
      expect(await rowOf(key)).toMatchObject({
        tx_hash: (first as { tx_hash: string }).tx_hash,
        replaced: [],
      });
      expect(await countsOf(rotated)).toEqual(countsBefore);
    },
  );

  it("of the hot wallet itself, its wallet NULL (journaled before evm migration 0011): replaced when due, as before", async () => {
    const key = "approve:signed-before-0011:own";
    await setAutomine(false);
    let first: Awaited<ReturnType<typeof approveNothing>> | undefined;
    try {
      first = await approveNothing(journalOf(gw.chain.walletClient, 1n), key);
      expect(first).toMatchObject({ attempt_id: key, broadcast: "taken" });
      await gw.app.db.query("UPDATE evm_sends SET wallet = NULL WHERE attempt_id = $1", [key]);
      const bumped = await approveNothing(journalOf(gw.chain.walletClient, 1_000_000_000n), key);
      expect(bumped).toMatchObject({ attempt_id: key, broadcast: "taken" });
      const firstHash = (first as { tx_hash: string }).tx_hash;
      expect((bumped as { tx_hash: string }).tx_hash).not.toBe(firstHash);
      expect(await rowOf(key)).toMatchObject({
        tx_hash: (bumped as { tx_hash: string }).tx_hash,
        replaced: [{ tx_hash: firstHash }],
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    const { tx_hash } = await rowOf(key);
    expect(
      await finalReceiptOf(journalOf(gw.chain.walletClient, 1n), { attempt_id: key, tx_hash }),
    ).toMatchObject({
      transactionHash: tx_hash,
    });
  });

  it("is judged never mined by its own wallet's count, not by the hot wallet's now", async () => {
    const key = "approve:signed-before-rotation:fate";
    // The wallet before the rotation, of few sends; the hot wallet now, the gateway's, of many.
    const retired = await walletOf("the hot wallet rotated from, of few sends");
    const now = journalOf(gw.chain.walletClient, 1_000_000_000n);
    await setAutomine(false);
    let sent: Awaited<ReturnType<typeof approveNothing>> | undefined;
    try {
      sent = await approveNothing(journalOf(retired, 1_000_000_000n), key);
      expect(sent).toMatchObject({ attempt_id: key, broadcast: "taken" });
      const row = sent as { attempt_id: string; tx_hash: `0x${string}`; nonce: number };
      const confirmedNonce = await confirmedNonceOf(now);
      expect(confirmedNonce).toBeGreaterThan(Number(row.nonce));
      // Before: never mined, the hot wallet's count being past its nonce, while it waits in the pool (a payout
      // failed, to be paid again elsewhere).
      expect(await sendFateOf(now, row, confirmedNonce)).toEqual({ status: "pending" });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await expectMined([sent as { tx_hash: `0x${string}` }]);
    const row = sent as { attempt_id: string; tx_hash: `0x${string}`; nonce: number };
    expect(await sendFateOf(now, row, await confirmedNonceOf(now))).toMatchObject({ status: "mined" });
  });

  /**
   * `wallet`'s send under `key` (approving nothing, at a tip of 1 wei) waiting in the pool, then its nonce taken by a
   * self-send of the same wallet outside the journal (its stuck send cancelled), mined, and buried past the depth
   * sendFateOf judges at: none of the send's transactions ever mined, its wallet's count past its nonce.
   */
  async function cancelledSend(wallet: WalletClient, key: string) {
    await setAutomine(false);
    let sent: Awaited<ReturnType<typeof approveNothing>> | undefined;
    try {
      sent = await approveNothing(journalOf(wallet as SendJournal["walletClient"], 1n), key);
      expect(sent).toMatchObject({ attempt_id: key, broadcast: "taken" });
      const { nonce } = sent as { nonce: number };
      await wallet.sendTransaction({
        account: wallet.account!,
        chain: gw.chain.chain,
        to: wallet.account!.address,
        value: 0n,
        nonce: Number(nonce),
        maxPriorityFeePerGas: 2_000_000_000n,
        maxFeePerGas: 300_000_000_000n,
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    await gw.chain.networkHelpers.mine(neverMinedDepthExtra + 2);
    const row = sent as { attempt_id: string; tx_hash: `0x${string}`; nonce: number };
    await expect(gw.chain.publicClient.getTransactionReceipt({ hash: row.tx_hash })).rejects.toThrow();
    return row;
  }

  it("never mined, its own wallet's nonce passed by another transaction: judged never mined, the hot wallet's count past it too", async () => {
    const retired = await walletOf("the hot wallet rotated from, its send cancelled");
    const row = await cancelledSend(retired, "approve:signed-before-rotation:cancelled");
    const now = journalOf(gw.chain.walletClient, 1_000_000_000n);
    const confirmedNonce = await confirmedNonceOf(now);
    expect(confirmedNonce).toBeGreaterThan(Number(row.nonce));
    expect(await sendFateOf(now, row, confirmedNonce)).toEqual({ status: "never_mined" });
  });

  it("never mined, its own wallet's nonce passed, the hot wallet fresh (its count short of the nonce): judged never mined", async () => {
    // The wallet before the rotation, of some sends: the cancelled send's nonce is past the fresh wallet's count.
    const retired = await walletOf("the hot wallet rotated from, many sends, its send cancelled");
    for (let send = 0; send < 3; send += 1)
      await retired.sendTransaction({
        account: retired.account!,
        chain: gw.chain.chain,
        to: retired.account!.address,
        value: 0n,
      });
    const row = await cancelledSend(retired, "approve:signed-before-rotation:cancelled-fresh");
    const now = journalOf(await walletOf("the hot wallet rotated to, fresh"), 1_000_000_000n);
    const confirmedNonce = await confirmedNonceOf(now);
    expect(confirmedNonce).toBeLessThanOrEqual(Number(row.nonce));
    // Before: pending, the hot wallet's count looked at first, until it passed the retired wallet's nonce.
    expect(await sendFateOf(now, row, confirmedNonce)).toEqual({ status: "never_mined" });
  });

  it("refused by the node, its own wallet's nonce open, the hot wallet's count past it: not taken", async () => {
    const key = "approve:signed-before-rotation:refused";
    const retired = await walletOf("the hot wallet rotated from, its send refused");
    await setAutomine(false);
    let sent: Awaited<ReturnType<typeof approveNothing>> | undefined;
    try {
      sent = await approveNothing(journalOf(retired, 1n), key);
      expect(sent).toMatchObject({ attempt_id: key, broadcast: "taken", nonce: 0 });
      // The pool drops it, and the retired wallet holds no ETH for its gas any more: the node refuses its bytes.
      await gw.chain.networkHelpers.dropTransaction((sent as { tx_hash: `0x${string}` }).tx_hash);
      await gw.chain.networkHelpers.setBalance(retired.account!.address, 0n);
      const now = journalOf(gw.chain.walletClient, 1_000_000_000n);
      expect(await confirmedNonceOf(now)).toBeGreaterThan(0);
      // Before: the hot wallet's count past its nonce, the send taken (for mined); its payout then waited on a
      // receipt that could never come, and no broadcast was said not taken.
      expect(await approveNothing(now, key)).toMatchObject({
        attempt_id: key,
        tx_hash: (sent as { tx_hash: string }).tx_hash,
        broadcast: "not_taken",
      });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    expect(await countsOf(retired)).toEqual([0, 0]);
  });

  it("refused by the node, its bytes naming no signer and its wallet NULL: not taken, the hot wallet's count no proof", async () => {
    const key = "approve:signed-by-nobody:refused";
    // A send of the hot wallet's, its signature's r and s zero: no address recovers from it, and the node refuses it.
    const signed = await approveNothing(
      journalOf(gw.chain.walletClient, 1_000_000_000n),
      "approve:signed-by-nobody:of",
    );
    await expectMined([signed as { tx_hash: `0x${string}` }]);
    const {
      r: _r,
      s: _s,
      v: _v,
      yParity: _yParity,
      ...unsigned
    } = parseTransaction((signed as { raw_tx: `0x${string}` }).raw_tx);
    const raw = serializeTransaction(unsigned as TransactionSerializable, { r: "0x0", s: "0x0", yParity: 0 });
    await expect(recoverTransactionAddress({ serializedTransaction: raw as never })).rejects.toThrow();
    const nonce = Number((signed as { nonce: number }).nonce);
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, $5, NULL)",
      [key, gw.chain.chain.id, keccak256(raw), raw, nonce],
    );
    const now = journalOf(gw.chain.walletClient, 1_000_000_000n);
    expect((await countsOf(gw.chain.walletClient))[0]).toBeGreaterThan(nonce);
    // Before: the hot wallet's count read in its place, past the nonce, and the send taken (for mined).
    expect(await approveNothing(now, key)).toMatchObject({ attempt_id: key, broadcast: "not_taken" });
    await gw.app.db.query("UPDATE evm_sends SET gas_done = true WHERE attempt_id = $1", [key]);
  });

  it("a payout signed before the rotation, mined after: succeeds for the new wallet's rail, with its Transfer from the wallet that signed it", async () => {
    const id = "att_signed_before_rotation";
    const rotated = await walletOf("the hot wallet rotated to, a payout of the old one");
    const { logger, lines } = recordingLogger();
    const before = anotherProcessRail(gw, { receiptTimeoutMs: 300 });
    const after = anotherProcessRail(gw, { walletClient: rotated, receiptTimeoutMs: 300, logger });
    await setAutomine(false);
    let first: Awaited<ReturnType<typeof before.execute>> | undefined;
    try {
      first = await before.execute(payout(id, 1_357n));
      expect(first).toMatchObject({ status: "in_flight" });
    } finally {
      await setAutomine(true);
      await gw.chain.networkHelpers.mine(1);
    }
    const txHash = (first as { reference: `0x${string}` }).reference;
    const receipt = await gw.chain.publicClient.waitForTransactionReceipt({ hash: txHash, timeout: 10_000 });
    const liquidity = after.snapshot().liquidity;
    // Before: "a payout succeeded without the expected log" (the hot wallet's Transfer looked for), on every pass.
    const outcome = await after.execute(payout(id, 1_357n));
    // The retired wallet paid it: the new hot wallet's liquidity, as the router reads it, did not move.
    expect(after.snapshot().liquidity).toBe(liquidity);
    expect(outcome).toMatchObject({
      status: "succeeded",
      evidence: { txHash, logIndex: expect.any(Number) },
      nativeFee: { asset: { code: "ETH" }, detail: { gasUsed: receipt.gasUsed.toString() } },
    });
    const { logIndex } = (outcome as { evidence: { logIndex: number } }).evidence;
    const proving = receipt.logs.find((log) => log.logIndex === logIndex);
    expect(proving?.address.toLowerCase()).toBe(gw.chain.contracts.testUsd.toLowerCase());
    expect(lines.filter((line) => line.level === "info" && /rotated from/.test(line.message))).toMatchObject([
      { fields: { txHash, paidBy: gw.chain.walletClient.account.address.toLowerCase() } },
    ]);
  });

  it("a payout signed before the rotation whose transaction moved no tokens to its destination is not proved by another Transfer", async () => {
    // The same key's send carrying another amount: mined, its Transfer from the signer, but not the attempt's own.
    const id = "att_signed_before_rotation_other_amount";
    await expect(anotherProcessRail(gw).execute(payout(id, 2_468n))).resolves.toMatchObject({
      status: "succeeded",
    });
    const rotated = await walletOf("the hot wallet rotated to, a payout of the old one of another amount");
    await expect(
      anotherProcessRail(gw, { walletClient: rotated, receiptTimeoutMs: 300 }).execute(payout(id, 2_469n)),
    ).rejects.toThrow(/without the expected log/);
  });
});
