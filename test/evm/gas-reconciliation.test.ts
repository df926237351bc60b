// The hot wallet's ETH and the ledger's ETH clearing account move together: every transaction the gateway sends from
// the hot wallet — a payout, the splitter's one-time approve, netting batches, a netting batch and a payout that were
// mined and reverted — has its gas booked once, so what the wallet really spent (its balance before − after, in wei)
// is what the rail's ETH clearing account moved, within the gwei rounding: each transaction's gas is booked in whole
// gwei rounded up (adapters/evm/payout.ts gasPaid), at most 1 gwei − 1 wei above what it cost.
//
// A transaction is made to revert on chain as a token's blacklist would make it: sent by the gateway while nothing is
// mined (its gas estimate passed), then the payee blacklisted by a transaction with a far higher tip, mined first in
// the same block.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Address, createPublicClient, custom, erc20Abi, type Hex, keccak256 } from "viem";
import { generatePrivateKey, type LocalAccount, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evmMigrations } from "../../adapters/evm/index.ts";
import { assets, divCeil, type Rail } from "../../core/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import {
  applyRailEvent,
  flushNetting,
  railAccountOpened,
  recoverOpenAttempts,
} from "../../gateway/payments/index.ts";
import { bookRailGas, bookSendGas, sendGasPassOnce } from "../../gateway/settlement/index.ts";
import { type AheadFees, installBlacklist } from "../support/blacklisting-token.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
let token: Awaited<ReturnType<typeof installBlacklist>>;

beforeAll(async () => {
  gw = await startGateway({ NETTING_MAX_FEE_SHARE_BPS: "1000", NETTING_INTERVAL_MS: "3600000" });
  token = await installBlacklist(gw.chain); // sent by development account 1: none of the hot wallet's ETH
  // A base fee of whole gwei and a tip of whole gwei would make every gas cost whole gwei: 7 wei more makes each
  // booking round up, as on a real chain.
  await gw.chain.setBaseFeePerGas(1_000_000_007n);
});
afterAll(async () => {
  await setAutomine(true);
  await gw?.app.close();
});

const setAutomine = (on: boolean) =>
  gw?.chain.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });

const weiPerGwei = 1_000_000_000n;
const ahead: AheadFees = { maxPriorityFeePerGas: 1_000_000_000_000n, maxFeePerGas: 2_000_000_000_000n };

const hotWallet = () => gw.chain.walletClient.account.address;

/** What the ledger says the hot wallet holds in ETH, and what its fee account was charged: gwei. */
async function ledgerEth() {
  const [clearing, fees] = await Promise.all(
    (["clearing", "fee"] as const).map(async (kind) => {
      const opened = await railAccountOpened(gw.app.settlement, { kind, rail: "evm", asset: assets.ETH });
      return gw.ledgerAccount(opened.ledgerAccountId);
    }),
  );
  return {
    held: clearing!.debitsPosted - clearing!.creditsPosted,
    fees: fees!.debitsPosted - fees!.creditsPosted,
  };
}

async function pay(amount: string, address: Address) {
  return gw.call("POST", "/v1/payments", {
    amount,
    asset: "USDC",
    source: { account: "acct_demo_customer" },
    destination: { type: "evm_address", address },
  });
}

/**
 * Runs `start` while nothing is mined, waits for the gateway's next send (its key like `keyLike`) to reach the node,
 * blacklists `payee` ahead of it in the one block then mined: the send reverts on chain. Its hash and what `start`
 * came to.
 */
async function revertingNextSend<T>(
  keyLike: string,
  payee: Address,
  start: () => Promise<T>,
): Promise<{ txHash: Hex; result: T }> {
  const nonce = await gw.chain.publicClient.getTransactionCount({
    address: hotWallet(),
    blockTag: "pending",
  });
  await setAutomine(false);
  let running: Promise<T> | undefined;
  try {
    running = start();
    let sent: { tx_hash: Hex } | undefined;
    for (let i = 0; i < 400 && sent === undefined; i += 1) {
      [sent] = await gw.app.db.query<{ tx_hash: Hex }>(
        "SELECT tx_hash FROM evm_sends WHERE nonce = $1 AND attempt_id LIKE $2",
        [nonce, keyLike],
      );
      if (sent !== undefined) {
        const seen = await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash }).catch(() => null);
        if (seen === null) sent = undefined;
      }
      if (sent === undefined) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    if (sent === undefined) throw new Error(`no send like ${keyLike} with nonce ${nonce} reached the node`);
    await token.sendBlacklist(payee, ahead);
    await gw.chain.networkHelpers.mine(1);
    await setAutomine(true);
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: sent.tx_hash });
    expect(receipt.status).toBe("reverted");
    return { txHash: sent.tx_hash, result: await running };
  } finally {
    await setAutomine(true);
    await running?.catch(() => undefined);
  }
}

/** Every transaction the hot wallet sent in blocks `from`…head, with the gas it paid (wei). */
async function hotWalletTransactions(from: bigint) {
  const head = await gw.chain.publicClient.getBlockNumber({ cacheTime: 0 });
  const sent: { hash: Hex; wei: bigint; status: string }[] = [];
  for (let number = from; number <= head; number += 1n) {
    const block = await gw.chain.publicClient.getBlock({ blockNumber: number, includeTransactions: true });
    for (const tx of block.transactions) {
      if (tx.from.toLowerCase() !== hotWallet().toLowerCase()) continue;
      const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: tx.hash });
      sent.push({ hash: tx.hash, wei: receipt.gasUsed * receipt.effectiveGasPrice, status: receipt.status });
    }
  }
  return sent;
}

describe("the hot wallet's gas, booked", () => {
  it("moves the ETH clearing account as the wallet's balance moved: approve, payouts, batches, reverts", async () => {
    const { chain } = gw;
    const wallet = hotWallet();
    // The splitter's approve is still to come (the first netting batch sends it).
    expect(
      await chain.publicClient.readContract({
        address: chain.contracts.testUsd,
        abi: erc20Abi,
        functionName: "allowance",
        args: [wallet, chain.contracts.splitter],
      }),
    ).toBe(0n);
    // Another wallet's sends in the journal, journaled before the wallet was (a key rotation's retired wallet): more
    // than a query of the pass reads, all at nonce 0, in front of every send of the hot wallet.
    const retired = await journalRetiredWalletSends(101);
    const firstBlock = (await chain.publicClient.getBlockNumber({ cacheTime: 0 })) + 1n;
    const weiBefore = await chain.publicClient.getBalance({ address: wallet });
    const ledgerBefore = await ledgerEth();

    // A payout paid at once.
    expect((await pay("5", chain.accounts[6]!.address)).body).toMatchObject({ status: "succeeded" });
    // Micro-payouts netted into one batch: the splitter's approve, then settleBatch.
    for (const payee of ["0x4444444444444444444444444444444444444444", chain.accounts[5]!.address] as const)
      expect((await pay("0.01", payee)).status).toBe(202);
    expect(await flushNetting(gw.app.payments.netting!, { force: true })).toMatchObject({ batches: 1 });
    // A batch mined reverted: its payee blacklisted in the block its settleBatch is in.
    const refusedPayee = "0x6666666666666666666666666666666666666666" as const;
    expect((await pay("0.01", refusedPayee)).status).toBe(202);
    expect((await pay("0.01", chain.accounts[5]!.address)).status).toBe(202);
    await revertingNextSend("settle:%", refusedPayee, () =>
      flushNetting(gw.app.payments.netting!, { force: true }),
    );
    // A payout mined reverted the same way.
    const refusedPayout = "0x7777777777777777777777777777777777777777" as const;
    await revertingNextSend("%", refusedPayout, () => pay("5", refusedPayout));
    // Netting pays what the reverted batch left.
    await flushNetting(gw.app.payments.netting!, { force: true });

    // The gas of sends no payment books (the approve, the reverts) is booked by the rail's pass; a second pass
    // books nothing more.
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chain.id);
    const ledgerAfter = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chain.id);
    expect(await ledgerEth()).toEqual(ledgerAfter);

    const transactions = await hotWalletTransactions(firstBlock);
    const statuses = transactions.map((tx) => tx.status);
    expect(statuses.filter((status) => status === "reverted")).toHaveLength(2);
    expect(transactions.length).toBeGreaterThanOrEqual(6); // payout, approve, 3 batches (1 reverted), payout reverted
    const spentWei = weiBefore - (await chain.publicClient.getBalance({ address: wallet }));
    const bookedGwei = ledgerBefore.held - ledgerAfter.held;
    // The clearing account moved what the wallet spent, to within 1 gwei a transaction (each rounded up: never
    // showing the wallet holding more than it does)…
    const overWei = bookedGwei * weiPerGwei - spentWei;
    expect(
      overWei >= 0n && overWei < BigInt(transactions.length) * weiPerGwei,
      `the wallet spent ${spentWei} wei on ${transactions.length} transactions; the ledger booked ${bookedGwei} gwei`,
    ).toBe(true);
    expect(overWei).toBeGreaterThan(0n); // the rounding is in play
    // …because every transaction's gas is booked once, each in gwei rounded up, through the rail's fee account.
    expect({ booked: bookedGwei, fees: ledgerAfter.fees - ledgerBefore.fees }).toEqual({
      booked: transactions.reduce((sum, tx) => sum + divCeil(tx.wei, weiPerGwei), 0n),
      fees: bookedGwei,
    });

    // The batches paid are netting's (the pass found netting's booking of their gas), the one reverted the pass's.
    const batches = await gw.app.db.query<{ booked_by: string; gas_done: boolean }>(
      `SELECT g.booked_by, s.gas_done FROM evm_sends s JOIN evm_send_gas g USING (attempt_id)
        WHERE s.attempt_id LIKE 'settle:%' AND s.tx_hash = ANY($1) ORDER BY g.booked_by`,
      [transactions.map((tx) => tx.hash.toLowerCase())],
    );
    expect(batches).toEqual([
      { booked_by: "netting", gas_done: true },
      { booked_by: "netting", gas_done: true },
      { booked_by: "send_gas", gas_done: true },
    ]);

    // The retired wallet's sends stood in front of none of these: known now as its own, judged by its count (never
    // past their nonce: it holds no ETH), and open still.
    expect(
      await gw.app.db.query(
        "SELECT 1 FROM evm_sends WHERE attempt_id LIKE 'aaa-retired:%' AND wallet = $1 AND NOT gas_done",
        [retired.toLowerCase()],
      ),
    ).toHaveLength(101);

    // A booking no payment carries names its transaction and what it was.
    // This test's approve (one of its transactions): another test journals an approve never mined.
    const [approve] = await gw.app.db.query<{ tx_hash: Hex }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id LIKE 'approve:%' AND tx_hash = ANY($1)",
      [transactions.map((tx) => tx.hash.toLowerCase())],
    );
    const [booked] = await gw.app.ledger.lookupTransfers([
      derivedLedgerId(`${chain.chain.id}:${approve!.tx_hash}`, "send-gas"),
    ]);
    expect(booked?.evidence).toMatchObject({
      rail: "evm",
      reference: approve!.tx_hash,
      detail: { kind: "send_gas", sent: "approve", reverted: "false" },
    });
  });

  it("tries a send whose booking throws again next pass, booking the others meanwhile", async () => {
    const first = await revertingNextSend("%", "0x8888888888888888888888888888888888888888", () =>
      pay("5", "0x8888888888888888888888888888888888888888"),
    );
    const second = await revertingNextSend("%", "0x9999999999999999999999999999999999999999", () =>
      pay("5", "0x9999999999999999999999999999999999999999"),
    );
    const chainId = gw.chain.chain.id;
    const bookedIds = async () =>
      (
        await gw.app.ledger.lookupTransfers(
          [first.txHash, second.txHash].map((hash) => derivedLedgerId(`${chainId}:${hash}`, "send-gas")),
        )
      ).map((transfer) => transfer.evidence?.reference);
    // The ledger refuses the first (as a conflict, an account that cannot open would): the pass goes on.
    const passed = await gw.rail.sendGasPass(async (send) => {
      if (send.txHash === first.txHash) throw new Error("the ledger refused this booking");
      return bookSendGas(gw.app.settlement, "evm", chainId, send);
    });
    expect({ booked: passed.booked.map((send) => send.txHash), failed: passed.failed }).toEqual({
      booked: [second.txHash],
      failed: 1,
    });
    expect(await bookedIds()).toEqual([second.txHash]);
    // The next pass books it.
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId);
    expect((await bookedIds()).sort()).toEqual([first.txHash, second.txHash].sort());
  });

  it("is done with a send never mined once the wallet's nonce passed it", async () => {
    // Signed and journaled at nonce 0 (long passed, at every block with the confirmations), never broadcast: its
    // nonce went to another transaction of the wallet.
    await journaledSend("approve:dropped", gw.chain.walletClient.account, { wallet: true });
    const passed = await sendGasPassOnce(gw.app.settlement, gw.rail, gw.chain.chain.id);
    expect(passed.neverMined).toBe(1);
    const [done] = await gw.app.db.query<{ booked_by: string; gas_wei: string; gas_done: boolean }>(
      `SELECT booked_by, gas_wei::text AS gas_wei, gas_done FROM evm_send_gas JOIN evm_sends USING (attempt_id)
        WHERE attempt_id = 'approve:dropped'`,
    );
    expect(done).toEqual({ booked_by: "never_mined", gas_wei: "0", gas_done: true });
  });

  it("books the gas a wallet the hot wallet's key rotated from paid for a send it signed before", async () => {
    const { chain } = gw;
    const retired = privateKeyToAccount(generatePrivateKey());
    await chain.networkHelpers.setBalance(retired.address, 10n ** 18n);
    // The splitter's approve of the wallet before the rotation, as its journal kept it, mined after.
    const key = "approve:signed-before-rotation";
    const raw = await journaledSend(key, retired, {
      wallet: true,
      fees: { maxFeePerGas: 10n * weiPerGwei, maxPriorityFeePerGas: weiPerGwei },
    });
    const hash = await chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    const receipt = await chain.publicClient.waitForTransactionReceipt({ hash });
    await chain.networkHelpers.mine(3);
    const before = await ledgerEth();
    // Before: the pass read the hot wallet's sends alone, and this gas, spent, was never booked.
    const passed = await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chain.id);
    expect(passed.booked.map((send) => send.txHash)).toContain(hash);
    const gwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, weiPerGwei);
    const [booked] = await gw.app.ledger.lookupTransfers([
      derivedLedgerId(`${chain.chain.id}:${hash}`, "send-gas"),
    ]);
    expect(booked?.amount).toBe(gwei);
    const after = await ledgerEth();
    expect({ held: before.held - after.held, fees: after.fees - before.fees }).toEqual({
      held: gwei,
      fees: gwei,
    });
    const [done] = await gw.app.db.query<{ booked_by: string; gas_done: boolean }>(
      `SELECT booked_by, gas_done FROM evm_send_gas JOIN evm_sends USING (attempt_id) WHERE attempt_id = $1`,
      [key],
    );
    expect(done).toEqual({ booked_by: "send_gas", gas_done: true });
  });

  it("reads a retired wallet's confirmed count once a pass, not once for each of its open sends", async () => {
    // Three sends of a wallet the key rotated from, drained (no ETH): never mined, each pending at every pass.
    const retired = (await journalRetiredWalletSends(3, "aab-drained")).toLowerCase();
    const countReads: string[] = [];
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: (args: { method: string; params?: unknown }) => {
          const [address, block] = (args.params ?? []) as [string?, string?];
          if (args.method === "eth_getTransactionCount" && address?.toLowerCase() === retired)
            countReads.push(block ?? "");
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    const passed = await sendGasPassOnce(
      gw.app.settlement,
      anotherProcessRail(gw, { publicClient }),
      gw.chain.chain.id,
    );
    expect(passed.pending).toBeGreaterThanOrEqual(3);
    // One read at a block with the confirmations for the three (the keeper's reads at the latest block aside).
    // Before: one for each send.
    expect(countReads.filter((block) => block !== "latest")).toHaveLength(1);
    const open = await gw.app.db.query(
      "SELECT 1 FROM evm_sends WHERE attempt_id LIKE 'aab-drained:%' AND wallet = $1 AND NOT gas_done",
      [retired],
    );
    expect(open).toHaveLength(3);
  });

  it("follows at least one send a pass, however long the pass took before its first (the keeper's broadcasts)", async () => {
    await journalRetiredWalletSends(2, "aac-slow-pass"); // drained: pending at every pass
    // A clock 30 s further at each reading: the pass's budget (20 s) is spent before its first send. Before, it
    // followed none, and a keeper outlasting the budget at every pass kept every gas unbooked.
    let readings = 0;
    const nowMs = () => {
      readings += 1;
      return readings * 30_000;
    };
    const followed = (passed: {
      booked: readonly unknown[];
      pending: number;
      neverMined: number;
      failed: number;
    }) => passed.booked.length + passed.pending + passed.neverMined + passed.failed;
    const rail = anotherProcessRail(gw, { nowMs });
    expect(followed(await sendGasPassOnce(gw.app.settlement, rail, gw.chain.chain.id))).toBe(1);
    // With time to spare, every open send.
    expect(
      followed(await sendGasPassOnce(gw.app.settlement, gw.rail, gw.chain.chain.id)),
    ).toBeGreaterThanOrEqual(2);
  });
});

describe("a payout's gas, when no outcome of it books it", () => {
  const chainId = () => gw.chain.chain.id;
  const sendGasId = (txHash: Hex) => derivedLedgerId(`${chainId()}:${txHash.toLowerCase()}`, "send-gas");
  /** The send's evm_send_gas row and whether the pass is done with it. */
  async function gasOf(key: string) {
    const [row] = await gw.app.db.query<{ booked_by: string | null; gas_done: boolean }>(
      `SELECT g.booked_by, s.gas_done FROM evm_sends s LEFT JOIN evm_send_gas g USING (attempt_id)
        WHERE s.attempt_id = $1`,
      [key],
    );
    return row;
  }
  /** What the payout's transaction cost the wallet, as every booking books it: gwei rounded up. */
  async function gasGwei(key: string): Promise<{ txHash: Hex; gwei: bigint }> {
    const [send] = await gw.app.db.query<{ tx_hash: Hex }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
      [key],
    );
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: send!.tx_hash });
    expect(receipt.status).toBe("success");
    return { txHash: send!.tx_hash, gwei: divCeil(receipt.gasUsed * receipt.effectiveGasPrice, weiPerGwei) };
  }

  /**
   * A payment through the API whose attempt is left in flight (the rail's wait for its receipt ran out while nothing
   * was mined); its transaction mined after, the gateway not asked again yet. The attempt's id.
   */
  async function payoutMinedInFlight(payee: Address): Promise<string> {
    const rails = gw.app.payments.rails as Map<string, Rail>;
    const real = rails.get("evm")!;
    const impatient = anotherProcessRail(gw, { receiptTimeoutMs: 300 });
    rails.set("evm", { ...real, execute: (attempt) => impatient.execute(attempt) });
    let created: Awaited<ReturnType<typeof pay>>;
    await setAutomine(false);
    try {
      created = await pay("5", payee);
    } finally {
      rails.set("evm", real);
      await setAutomine(true);
    }
    const [attempt] = await gw.app.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM attempts WHERE payment_id = $1",
      [created.body.id],
    );
    expect(attempt?.status).toBe("in_flight");
    await gw.chain.networkHelpers.mine(1);
    return attempt!.id;
  }

  it("books the gas of a payout the gateway holds no payment or refund of", async () => {
    // Paid on the rail under an attempt id no payment has (a send the gateway forgot).
    const key = "att_gas_nobody_books";
    const outcome = await gw.rail.execute({
      id: key,
      paymentId: "pay_gas_nobody_books",
      tenantId: "ten_test",
      amount: 1_000n,
      destination: { kind: "evm_address", address: gw.chain.accounts[6]!.address },
      feeMax: 0n,
    });
    expect(outcome).toMatchObject({ status: "succeeded" });
    const { txHash, gwei } = await gasGwei(key);
    const before = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // Before: left to "the payment", which there is none of: never booked.
    expect((await ledgerEth()).fees - before.fees).toBe(gwei);
    expect((await gw.app.ledger.lookupTransfers([sendGasId(txHash)]))[0]?.amount).toBe(gwei);
    expect(await gasOf(key)).toEqual({ booked_by: "send_gas", gas_done: true });
  });

  it("waits for a payment whose outcome is still to come, and leaves the gas to it once it booked it", async () => {
    const attemptId = await payoutMinedInFlight("0x1111111111111111111111111111111111111112");
    const { txHash, gwei } = await gasGwei(attemptId);
    const before = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // Mined and final, but its payment may still book it: not the pass's, nor done.
    expect(await ledgerEth()).toEqual(before);
    expect(await gasOf(attemptId)).toMatchObject({ gas_done: false });
    // Recovery asks the rail again: the payment succeeds and books its gas (its native fee).
    await recoverOpenAttempts(gw.app.payments, { quietMs: 0 });
    const [attempt] = await gw.app.db.query<{ status: string }>("SELECT status FROM attempts WHERE id = $1", [
      attemptId,
    ]);
    expect(attempt?.status).toBe("succeeded");
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // Booked once, by the payment.
    expect((await ledgerEth()).fees - before.fees).toBe(gwei);
    expect(await gw.app.ledger.lookupTransfers([sendGasId(txHash)])).toEqual([]);
    expect(await gasOf(attemptId)).toEqual({ booked_by: "payment", gas_done: true });
  });

  it("books the gas of a payout whose attempt ended failed after its transaction was mined", async () => {
    const attemptId = await payoutMinedInFlight("0x1111111111111111111111111111111111111113");
    const { txHash, gwei } = await gasGwei(attemptId);
    // The attempt ends failed all the same (a rail's event said so): its payment never books the gas.
    await applyRailEvent(gw.app.payments, {
      kind: "attempt_failed",
      attemptId,
      code: "rejected",
      message: "reported failed after it was mined",
      retryElsewhere: false,
    });
    const [attempt] = await gw.app.db.query<{ status: string }>("SELECT status FROM attempts WHERE id = $1", [
      attemptId,
    ]);
    expect(attempt?.status).toBe("failed");
    const before = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // Before: left to the payment (the pass marked it "payment" once mined), which never booked it.
    expect((await ledgerEth()).fees - before.fees).toBe(gwei);
    expect((await gw.app.ledger.lookupTransfers([sendGasId(txHash)]))[0]?.amount).toBe(gwei);
    expect(await gasOf(attemptId)).toEqual({ booked_by: "send_gas", gas_done: true });
  });

  it("says once, naming the send and its owner, when a payment has held its gas unbooked for an hour", async () => {
    const attemptId = await payoutMinedInFlight("0x1111111111111111111111111111111111111114");
    const { txHash } = await gasGwei(attemptId);
    // Signed an hour ago and more, its attempt still in flight (nothing runs it again).
    await gw.app.db.query(
      "UPDATE evm_sends SET signed_at = now() - interval '61 minutes' WHERE attempt_id = $1",
      [attemptId],
    );
    const { logger, lines } = recordingLogger();
    const rail = anotherProcessRail(gw, { logger });
    await sendGasPassOnce(gw.app.settlement, rail, chainId());
    await sendGasPassOnce(gw.app.settlement, rail, chainId());
    expect(await gasOf(attemptId)).toMatchObject({ gas_done: false });
    // Before: nothing said, pass after pass, for as long as the owner stayed open.
    const said = lines.filter((line) => line.level === "warn" && line.fields.send === attemptId);
    expect(said).toHaveLength(1);
    expect(said[0]!.fields).toMatchObject({ txHash, owner: "payment" });
    expect(said[0]!.message).toMatch(/waits for its owner/);
    // Its owner ends (recovery runs it again, it succeeds and books the gas): the send is done, nothing more said.
    await recoverOpenAttempts(gw.app.payments, { quietMs: 0 });
    await sendGasPassOnce(gw.app.settlement, rail, chainId());
    expect(await gasOf(attemptId)).toEqual({ booked_by: "payment", gas_done: true });
    expect(lines.filter((line) => line.level === "warn" && line.fields.send === attemptId)).toHaveLength(1);
  });

  it("asks the ledger again about the payouts an older pass left to their payment on trust (EVM migration 0018)", async () => {
    // One whose attempt ended failed after it was mined (its payment never booked the gas)…
    const failedId = await payoutMinedInFlight("0x1111111111111111111111111111111111111115");
    await applyRailEvent(gw.app.payments, {
      kind: "attempt_failed",
      attemptId: failedId,
      code: "rejected",
      message: "reported failed after it was mined",
      retryElsewhere: false,
    });
    // …and one whose payment succeeded and booked it.
    const paidId = await payoutMinedInFlight("0x1111111111111111111111111111111111111116");
    await recoverOpenAttempts(gw.app.payments, { quietMs: 0 });
    const statuses = await gw.app.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM attempts WHERE id = ANY($1) ORDER BY status",
      [[failedId, paidId]],
    );
    expect(statuses).toEqual([
      { id: failedId, status: "failed" },
      { id: paidId, status: "succeeded" },
    ]);
    const failed = await gasGwei(failedId);
    const paid = await gasGwei(paidId);
    // Both closed as the pass before this release closed them once mined: the payment's, on trust.
    for (const [key, txHash] of [
      [failedId, failed.txHash],
      [paidId, paid.txHash],
    ] as const) {
      const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
      await gw.app.db.query(
        `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
         VALUES ($1, $2, $3, false, $4, 'payment')`,
        [key, chainId(), txHash.toLowerCase(), (receipt.gasUsed * receipt.effectiveGasPrice).toString()],
      );
      await gw.app.db.query("UPDATE evm_sends SET gas_done = true WHERE attempt_id = $1", [key]);
    }
    const before = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // Closed: no pass looks at them again, and the failed one's gas is never booked.
    expect(await ledgerEth()).toEqual(before);

    await gw.app.db.query(
      await readFile(path.join(evmMigrations.directory, "0018_evm_send_gas_owner_asked.sql"), "utf8"),
    );
    expect(await gasOf(failedId)).toEqual({ booked_by: "send_gas", gas_done: false });
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    await sendGasPassOnce(gw.app.settlement, gw.rail, chainId());
    // The failed one's booked once, by the pass; the paid one's left to its payment, not booked again.
    expect((await ledgerEth()).fees - before.fees).toBe(failed.gwei);
    expect((await gw.app.ledger.lookupTransfers([sendGasId(failed.txHash)]))[0]?.amount).toBe(failed.gwei);
    expect(await gw.app.ledger.lookupTransfers([sendGasId(paid.txHash)])).toEqual([]);
    expect(await gasOf(failedId)).toEqual({ booked_by: "send_gas", gas_done: true });
    expect(await gasOf(paidId)).toEqual({ booked_by: "payment", gas_done: true });
  });

  /**
   * A payout whose attempt ended failed after it was mined, closed on trust by the pass before EVM migration 0018 (its
   * transaction and gas stored), reopened by it, and long mined: its nonce final (the confirmations and
   * neverMinedDepthExtra below the head; mined a block at a time, as Hardhat answers the wallet's nonce at the blocks
   * one hardhat_mine of many leaves between as 0). The attempt's id, its transaction and its gas.
   */
  async function reopenedPayoutLongMined(payee: Address) {
    const attemptId = await payoutMinedInFlight(payee);
    await applyRailEvent(gw.app.payments, {
      kind: "attempt_failed",
      attemptId,
      code: "rejected",
      message: "reported failed after it was mined",
      retryElsewhere: false,
    });
    const { txHash, gwei } = await gasGwei(attemptId);
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
    const wei = receipt.gasUsed * receipt.effectiveGasPrice;
    await gw.app.db.query(
      `INSERT INTO evm_send_gas (attempt_id, chain_id, tx_hash, reverted, gas_wei, booked_by)
       VALUES ($1, $2, $3, false, $4, 'payment')`,
      [attemptId, chainId(), txHash.toLowerCase(), wei.toString()],
    );
    await gw.app.db.query("UPDATE evm_sends SET gas_done = true WHERE attempt_id = $1", [attemptId]);
    await gw.app.db.query(
      await readFile(path.join(evmMigrations.directory, "0018_evm_send_gas_owner_asked.sql"), "utf8"),
    );
    for (let i = 0; i < 10; i += 1) await gw.chain.networkHelpers.mine(1);
    return { attemptId, txHash, gwei, wei };
  }

  /** The chain through a node that has pruned its transaction index (geth's --history.transactions): no receipt of `txHash`. */
  async function prunedOf(txHash: Hex) {
    const pruned = custom({
      request: (args: { method: string; params?: unknown }) =>
        args.method === "eth_getTransactionReceipt" &&
        String((args.params as unknown[])[0]).toLowerCase() === txHash.toLowerCase()
          ? Promise.resolve(null)
          : gw.chain.provider.request(args as never),
    });
    const publicClient = createPublicClient({
      chain: gw.chain.chain,
      transport: pruned,
      pollingInterval: 50,
    });
    await expect(publicClient.getTransactionReceipt({ hash: txHash })).rejects.toThrow(/could not be found/);
    return publicClient;
  }

  it("books a reopened payout's gas from what was stored of it when the node no longer has its receipt (pruned)", async () => {
    const { attemptId, txHash, gwei, wei } = await reopenedPayoutLongMined(
      "0x1111111111111111111111111111111111111117",
    );
    const { logger, lines } = recordingLogger();
    const rail = anotherProcessRail(gw, { publicClient: await prunedOf(txHash), logger });
    const before = await ledgerEth();
    await sendGasPassOnce(gw.app.settlement, rail, chainId());
    await sendGasPassOnce(gw.app.settlement, rail, chainId());
    // Before: judged never mined, its gas never booked and its transaction and gas wiped (tx_hash null, gas_wei 0).
    expect((await ledgerEth()).fees - before.fees).toBe(gwei);
    expect((await gw.app.ledger.lookupTransfers([sendGasId(txHash)]))[0]?.amount).toBe(gwei);
    const [stored] = await gw.app.db.query<{ tx_hash: string; gas_wei: string; booked_by: string }>(
      "SELECT tx_hash, gas_wei::text AS gas_wei, booked_by FROM evm_send_gas WHERE attempt_id = $1",
      [attemptId],
    );
    expect(stored).toEqual({ tx_hash: txHash.toLowerCase(), gas_wei: wei.toString(), booked_by: "send_gas" });
    expect(await gasOf(attemptId)).toEqual({ booked_by: "send_gas", gas_done: true });
    expect(
      lines.filter((line) => line.fields.send === attemptId && /no receipt/.test(line.message)),
    ).toHaveLength(1);
  });

  it("books a send's gas once when one pass booked it from its receipt and the next, the receipt pruned, from what was stored", async () => {
    const { attemptId, txHash, gwei } = await reopenedPayoutLongMined(
      "0x1111111111111111111111111111111111111118",
    );
    // A pass books it from its receipt and stops before the send is marked done.
    await gw.rail.sendGasPass(async (send) => {
      const booking = await bookSendGas(gw.app.settlement, "evm", chainId(), send);
      if (send.key === attemptId) throw new Error("the process stopped before the send was marked done");
      return booking;
    });
    expect(await gasOf(attemptId)).toEqual({ booked_by: "send_gas", gas_done: false });
    expect((await gw.app.ledger.lookupTransfers([sendGasId(txHash)]))[0]?.amount).toBe(gwei);
    const booked = await ledgerEth();
    // The next asks a node that has pruned the receipt since: the same booking again, from what was stored.
    const { logger, lines } = recordingLogger();
    const rail = anotherProcessRail(gw, { publicClient: await prunedOf(txHash), logger });
    const passed = await sendGasPassOnce(gw.app.settlement, rail, chainId());
    // Before: "booked with other terms" (the first booking's evidence named the receipt's gas used and price), the
    // send tried again and refused so at every pass.
    expect(lines.filter((line) => line.level === "error")).toEqual([]);
    expect(passed.failed).toBe(0);
    expect(await gasOf(attemptId)).toEqual({ booked_by: "send_gas", gas_done: true });
    // Booked once: nothing more.
    expect(await ledgerEth()).toEqual(booked);
    expect(
      (await gw.app.ledger.lookupTransfers([sendGasId(txHash)])).map((transfer) => transfer.amount),
    ).toEqual([gwei]);
  });

  it("takes a send's gas booked by the version before 9b9ea96 (its receipt's gas in the evidence) for booked: marked done, nothing more", async () => {
    const { attemptId, txHash, gwei, wei } = await reopenedPayoutLongMined(
      "0x1111111111111111111111111111111111111119",
    );
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
    // Booked by that version's pass, which stopped before the send was marked done (or was upgraded meanwhile).
    await bookRailGas(gw.app.settlement, {
      rail: "evm",
      gas: { asset: assets.ETH, amount: gwei, detail: {} },
      id: sendGasId(txHash),
      evidence: {
        rail: "evm",
        reference: txHash,
        detail: {
          kind: "send_gas",
          send: attemptId,
          sent: "payout",
          reverted: "false",
          gasUsed: receipt.gasUsed.toString(),
          effectiveGasPrice: receipt.effectiveGasPrice.toString(),
          wei: wei.toString(),
        },
      },
      label: "the gas, booked the old way",
    });
    const booked = await ledgerEth();
    const { logger, lines } = recordingLogger();
    const passed = await sendGasPassOnce(gw.app.settlement, anotherProcessRail(gw, { logger }), chainId());
    // Before: "booked with other terms" at every pass (the evidence of today's shape names the wei alone), the send
    // never marked done.
    expect(lines.filter((line) => line.level === "error")).toEqual([]);
    expect(passed.failed).toBe(0);
    expect(await gasOf(attemptId)).toEqual({ booked_by: "send_gas", gas_done: true });
    expect(await ledgerEth()).toEqual(booked);
    const [kept] = await gw.app.ledger.lookupTransfers([sendGasId(txHash)]);
    expect(kept).toMatchObject({
      amount: gwei,
      evidence: { detail: { gasUsed: receipt.gasUsed.toString() } },
    });
  });
});

/**
 * `count` sends of another wallet journaled as the journal did before it kept the wallet (wallet null), each signed
 * with that wallet's key at nonce 0 and never broadcast; the retired wallet's address.
 */
async function journalRetiredWalletSends(count: number, keyPrefix = "aaa-retired"): Promise<Address> {
  const retired = privateKeyToAccount(generatePrivateKey());
  for (let i = 0; i < count; i += 1) await journaledSend(`${keyPrefix}:${i}`, retired, { value: BigInt(i) });
  return retired.address;
}

/**
 * A transfer of `value` wei from `account` to itself at nonce 0 (21,000 gas, `fees` or 1 wei each), signed and journaled
 * under `key`, not broadcast: its wallet kept (`wallet`), or NULL as before evm migration 0011. Its signed bytes.
 */
async function journaledSend(
  key: string,
  account: { address: Address; signTransaction?: LocalAccount["signTransaction"] },
  {
    wallet = false,
    value = 0n,
    fees = { maxFeePerGas: 1n, maxPriorityFeePerGas: 1n },
  }: { wallet?: boolean; value?: bigint; fees?: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } },
): Promise<Hex> {
  const raw = await account.signTransaction!({
    chainId: gw.chain.chain.id,
    type: "eip1559",
    nonce: 0,
    to: account.address,
    value,
    gas: 21_000n,
    ...fees,
  });
  await gw.app.db.query(
    "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, 0, $5)",
    [key, gw.chain.chain.id, keccak256(raw), raw, wallet ? account.address.toLowerCase() : null],
  );
  return raw;
}
