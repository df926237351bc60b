import { type Address, type Hex, keccak256, stringToHex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EvmRail } from "../../adapters/evm/index.ts";
import { type Db, divCeil, silentLogger } from "../../core/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { sendGasPassOnce } from "../../gateway/settlement/index.ts";
import {
  type AuthorizationBatchSender,
  createBatchSettler,
  splitEvenlyRemainderToFirst,
} from "../../gateway/x402/batch.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { reconcileX402 } from "../../gateway/x402/reconcile.ts";
import { createSingleSettler } from "../../gateway/x402/settle.ts";
import { claim, sentAuthorization } from "../../gateway/x402/store.ts";
import {
  anotherProcessRail,
  type Gateway,
  mintedPayer,
  signedX402Payment,
  x402BatchGateway,
} from "./support.ts";

let gw: Gateway;
let settlerAddress: Address;
let chain: X402Chain;
const payerFunds = 1_000_000n;

beforeAll(async () => {
  ({ gw, settlerAddress, chain } = await x402BatchGateway());
});
afterAll(async () => {
  await gw?.app.close();
});

/** One reconciliation pass over the test's chain, every row taken however recent (unless `submittedQuietMs`). */
const reconcile = (submittedQuietMs = 0) =>
  reconcileX402(
    { db: gw.app.db, settlement: gw.app.settlement, chains: { chains: [chain] }, logger: silentLogger },
    { submittedQuietMs },
  );

/** A new payer (named: the same key every run) holding TestUSD. */
const newPayer = (name: string) => mintedPayer(gw, `x402 batch crash test payer ${name}`, payerFunds);

type Payer = Awaited<ReturnType<typeof newPayer>>;

/** The payer's signed payment of `value` to the hot wallet, claimed as the facilitator claims it (`signer`: a bad one). */
async function claimedPayment(payer: Payer, value: bigint, signer: Payer = payer) {
  const paid = await signedX402Payment(gw, chain, payer, value, {
    signer,
    nonce: keccak256(stringToHex(`crash nonce ${payer.address} ${value} ${Math.random()}`)),
    window: { validAfter: 0n, validBefore: 2_000_000_000n },
    description: "x402 batch crash test",
  });
  expect(await claim(gw.app.db, chain, paid.claimed.authorization, paid.claimed.credit)).toBe(true);
  return paid;
}

type Payment = Awaited<ReturnType<typeof claimedPayment>>;

async function rowOf(p: Payment) {
  const [row] = await gw.app.db.query<{
    status: string;
    tx_hash: string | null;
    failure: string | null;
    invoice_id: string | null;
  }>("SELECT status, tx_hash, failure, invoice_id FROM x402_authorizations WHERE payer = $1 AND nonce = $2", [
    p.claimed.authorization.from.toLowerCase(),
    p.claimed.authorization.nonce.toLowerCase(),
  ]);
  if (row === undefined) throw new Error("the payment has no row");
  return row;
}

/**
 * The payments settled as one batch through `rail` by a settler that dies once the rail is done with it (whatever
 * the rail answered, or threw): the batch's journal key and the transaction the journal holds, mined.
 */
async function sentThenDied(ps: readonly Payment[], rail: EvmRail = gw.rail) {
  let key: string | undefined;
  const dying: AuthorizationBatchSender = async (batch) => {
    key = batch.key;
    await rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress }).catch(() => undefined);
    throw new Error("the process died (test)");
  };
  const settler = createBatchSettler({
    settlement: gw.app.settlement,
    senderOf: () => dying,
    single: createSingleSettler({ settlement: gw.app.settlement }),
    settings: { batchSizeMax: ps.length, batchWaitMsMax: 60_000 },
  });
  const results = await Promise.all(ps.map((p) => settler.settle(p.claimed, p.requirements)));
  await settler.close();
  for (const result of results) expect(result).toMatchObject({ ok: false, pending: true });
  // Nothing recorded: every row still `claimed`, bound to its invoice, with no transaction.
  for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "claimed", tx_hash: null });
  const attempt = `x402-batch:${key}`;
  const [sent] = await gw.app.db.query<{ tx_hash: Hex }>(
    "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
    [attempt],
  );
  if (sent === undefined) throw new Error(`the journal holds no send under ${attempt}`);
  const receipt = await gw.chain.publicClient.waitForTransactionReceipt({ hash: sent.tx_hash });
  return {
    attempt,
    txHash: sent.tx_hash,
    gas: divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n),
  };
}

/** Who the send's gas is claimed for (evm_send_gas.booked_by), or null. */
async function gasOwner(attempt: string): Promise<string | null> {
  const [row] = await gw.app.db.query<{ booked_by: string }>(
    "SELECT booked_by FROM evm_send_gas WHERE attempt_id = $1",
    [attempt],
  );
  return row?.booked_by ?? null;
}

/** Each payment's share of the batch's gas, as batch.ts books it (by invoice id, the remainder to the smallest). */
async function sharesBooked(txHash: Hex, ps: readonly Payment[]) {
  const invoiceIds = (await Promise.all(ps.map(rowOf))).map((row) => row.invoice_id!).sort();
  const ids = invoiceIds.map((invoiceId) =>
    derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}:${invoiceId}`, "x402-batch-gas"),
  );
  const booked = new Map((await gw.app.ledger.lookupTransfers(ids)).map((t) => [t.id, t.amount]));
  return ids.map((id) => booked.get(id));
}

/** The gas booked for the transaction by the send-gas pass's own booker (under its id), in gwei. */
async function bookedByPass(txHash: Hex): Promise<bigint> {
  const id = derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}`, "send-gas");
  const transfers = await gw.app.ledger.lookupTransfers([id]);
  return transfers.reduce((sum, t) => sum + t.amount, 0n);
}

/** The database, its `INSERT INTO evm_send_gas` refused: a rail on it dies before it hands a batch's gas over. */
function dbDyingAtHandOver(db: Db): Db {
  return new Proxy(db, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (property !== "query") return value.bind(target);
      return (text: string, params?: unknown[]) => {
        if (text.includes("INSERT INTO evm_send_gas")) throw new Error("the process died (test)");
        return value.call(target, text, params);
      };
    },
  });
}

/**
 * The database of a process that dies once it has recorded `records` rows with a transaction (store.ts record): every
 * statement after that never answers, as none would after a SIGKILL. `died` resolves then.
 */
function dbDyingAfterRecords(db: Db, records: number) {
  let recorded = 0;
  let dead = false;
  let die = () => {};
  const died = new Promise<void>((resolve) => {
    die = resolve;
  });
  const dying = new Proxy(db, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (property !== "query") return value.bind(target);
      return (text: string, params?: unknown[]) => {
        if (!dead && text.includes("SET status = $5, invoice_id") && params?.[6] != null) {
          recorded += 1;
          if (recorded > records) {
            dead = true;
            die();
          }
        }
        if (dead) return new Promise(() => {});
        return value.call(target, text, params);
      };
    },
  });
  return { db: dying, died };
}

describe("a batch settler that dies once the rail has sent its batch, before it records it", () => {
  it("after the rail handed the gas to x402: the rows concluded by the receipt, the gas booked once", async () => {
    const [a, b, stranger] = [
      await newPayer("handed a"),
      await newPayer("handed b"),
      await newPayer("handed stranger"),
    ];
    // b's signed by another: the token refuses it alone, the others are spent.
    const ps = [
      await claimedPayment(a, 210n),
      await claimedPayment(b, 220n, stranger),
      await claimedPayment(a, 230n),
    ];
    const { attempt, txHash, gas } = await sentThenDied(ps);
    expect(gas).toBeGreaterThan(0n);
    // The rail handed the batch's gas to x402: the send-gas pass books none of it.
    expect(await gasOwner(attempt)).toBe("x402");
    const feesBefore = await gw.gasFeesBooked();

    // Before: the rows stayed `claimed` for good (reconciliation read only rows with a transaction), and the gas
    // was booked by no one.
    expect(await reconcile()).toEqual({ settled: 2, failed: 1, left: 0 });
    expect(await rowOf(ps[0]!)).toMatchObject({ status: "settled", tx_hash: txHash });
    // b's refusal read from the receipt as the settler reads it (before: `not_spent`).
    expect(await rowOf(ps[1]!)).toMatchObject({
      status: "failed",
      failure: "signature_invalid",
      tx_hash: txHash,
    });
    expect(await rowOf(ps[2]!)).toMatchObject({ status: "settled", tx_hash: txHash });
    expect(await sharesBooked(txHash, ps)).toEqual(splitEvenlyRemainderToFirst(gas, ps.length));
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);
    // Once: another pass finds nothing, books nothing.
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);

    // Never twice: each authorization stays taken, and a retried settle is answered by the batch's transaction.
    for (const p of ps)
      expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(false);
    expect(await sentAuthorization(gw.app.db, chain, ps[0]!.claimed.authorization)).toMatchObject({
      status: "settled",
      txHash,
    });
    expect(await gw.tokenBalance(a.address)).toBe(payerFunds - 210n - 230n);
    expect(await gw.tokenBalance(b.address)).toBe(payerFunds);
  });

  it("before the rail handed the gas over: the send-gas pass leaves it to x402, which books it once", async () => {
    const [a, b] = [await newPayer("not handed a"), await newPayer("not handed b")];
    const ps = [await claimedPayment(a, 240n), await claimedPayment(b, 250n)];
    const dying = anotherProcessRail(gw, { db: dbDyingAtHandOver(gw.app.db) });
    const { attempt, txHash, gas } = await sentThenDied(ps, dying);
    expect(await gasOwner(attempt)).toBeNull();
    // Long past the rail's wait for the receipt: the pass no longer waits for a hand-over.
    await gw.app.db.query(
      "UPDATE evm_sends SET signed_at = signed_at - interval '1 hour' WHERE attempt_id = $1",
      [attempt],
    );
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chainId);
    // Before: the pass booked it under its own id, and x402 (once it concluded the rows) would have booked it again.
    expect(await bookedByPass(txHash)).toBe(0n);
    expect(await gasOwner(attempt)).toBe("x402");
    const feesBefore = await gw.gasFeesBooked();

    expect(await reconcile()).toEqual({ settled: 2, failed: 0, left: 0 });
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: txHash });
    expect(await sharesBooked(txHash, ps)).toEqual(splitEvenlyRemainderToFirst(gas, ps.length));
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chainId);
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
    expect(await bookedByPass(txHash)).toBe(0n);
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);
  });
});

describe("a batch settler that dies part way through its record, the batch's send fee-bumped since", () => {
  it("the rows it recorded and those adopted are one batch: its gas split over all of them, booked once", async () => {
    const [a, b, c] = [await newPayer("bumped a"), await newPayer("bumped b"), await newPayer("bumped c")];
    const ps = [await claimedPayment(a, 260n), await claimedPayment(b, 270n), await claimedPayment(c, 280n)];
    // The rail waits 300 ms for a receipt and replaces the send as soon as it is asked again (its fee bump); nothing
    // is mined meanwhile, so the settler hears `in_flight` and records its rows `submitted` with the first transaction
    // — one of them: then its process dies.
    const bumping = anotherProcessRail(gw, { receiptTimeoutMs: 300, replaceAfterMs: 0 });
    let sent: Parameters<AuthorizationBatchSender>[0] | undefined;
    const sender: AuthorizationBatchSender = async (batch) => {
      sent = batch;
      return bumping.settleAuthorizationBatch({ ...batch, settler: settlerAddress });
    };
    const { db, died } = dbDyingAfterRecords(gw.app.db, 1);
    const settler = createBatchSettler({
      settlement: { ...gw.app.settlement, db },
      senderOf: () => sender,
      single: createSingleSettler({ settlement: gw.app.settlement }),
      settings: { batchSizeMax: ps.length, batchWaitMsMax: 60_000 },
    });
    let bumped: Hex;
    await gw.setAutomine(false);
    try {
      // Its callers are never answered: the process is gone.
      for (const p of ps) void settler.settle(p.claimed, p.requirements);
      await died;
      const rows = await Promise.all(ps.map(rowOf));
      const recorded = rows.filter((row) => row.tx_hash !== null);
      expect(recorded).toHaveLength(1);
      expect(recorded[0]).toMatchObject({ status: "submitted" });
      const first = recorded[0]!.tx_hash! as Hex;
      expect(rows.filter((row) => row.status === "claimed" && row.tx_hash === null)).toHaveLength(2);
      // The send-gas pass's fee bump (the same key sent again), mined in the first one's stead.
      const again = await bumping.settleAuthorizationBatch({ ...sent!, settler: settlerAddress });
      if (again.status !== "in_flight") throw new Error(`the bumped batch: ${again.status}`);
      bumped = again.txHash;
      expect(await gw.rail.sendHashesOf(first)).toEqual([bumped, first]);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await gw.setAutomine(true);
    }
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: bumped });
    expect(receipt.status).toBe("success");
    const gas = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    const feesBefore = await gw.gasFeesBooked();

    expect(await reconcile()).toEqual({ settled: 3, failed: 0, left: 0 });
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: bumped });
    // Before: the two adopted rows carried the send's latest transaction, the recorded one the first, and the batch's
    // gas was split as two batches': whole over the two adopted rows, then a third of it again for the recorded one.
    expect(await sharesBooked(bumped, ps)).toEqual(splitEvenlyRemainderToFirst(gas, ps.length));
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
    expect(await gw.gasFeesBooked()).toBe(feesBefore + gas);
    expect(await gw.tokenBalance(a.address)).toBe(payerFunds - 260n);
    expect(await gw.tokenBalance(b.address)).toBe(payerFunds - 270n);
    expect(await gw.tokenBalance(c.address)).toBe(payerFunds - 280n);
  });
});

describe("a batch reconciliation would adopt", () => {
  it("is not adopted while its send is recent, however long ago its rows were named", async () => {
    const [a, b] = [await newPayer("recent send a"), await newPayer("recent send b")];
    const ps = [await claimedPayment(a, 290n), await claimedPayment(b, 300n)];
    const { txHash } = await sentThenDied(ps);
    // Named an hour before the rail signed the send (the batch waited for the hot wallet's turn, then its receipt).
    for (const p of ps)
      await gw.app.db.query(
        "UPDATE x402_authorizations SET updated_at = now() - interval '1 hour' WHERE payer = $1 AND nonce = $2",
        [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
      );
    // Before: adopted and concluded at once, beside the settler still waiting for the receipt.
    expect(await reconcile(60_000)).toEqual({ settled: 0, failed: 0, left: 0 });
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "claimed", tx_hash: null });
    expect(await reconcile()).toEqual({ settled: 2, failed: 0, left: 0 });
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: txHash });
  });

  it("is not sent when a claim of it is no longer its caller's: the others given back, nothing adopted", async () => {
    const [a, b] = [await newPayer("unnamed a"), await newPayer("unnamed b")];
    const ps = [await claimedPayment(a, 310n), await claimedPayment(b, 320n)];
    const sent: string[] = [];
    const sender: AuthorizationBatchSender = async (batch) => {
      sent.push(batch.key);
      return gw.rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress });
    };
    const settler = createBatchSettler({
      settlement: gw.app.settlement,
      senderOf: () => sender,
      single: createSingleSettler({ settlement: gw.app.settlement }),
      settings: { batchSizeMax: ps.length, batchWaitMsMax: 60_000 },
    });
    // a's payment waits in the queue, bound to its invoice; its claim is then bound to another payment's invoice (as
    // a settle of the same authorization by a caller that did not claim it binds it: settle.ts bookInvoice).
    const waiting = settler.settle(ps[0]!.claimed, ps[0]!.requirements);
    await expect.poll(async () => (await rowOf(ps[0]!)).invoice_id).not.toBeNull();
    await gw.app.db.query(
      "UPDATE x402_authorizations SET invoice_id = 'another' WHERE payer = $1 AND nonce = $2",
      [a.address.toLowerCase(), ps[0]!.claimed.authorization.nonce.toLowerCase()],
    );
    const results = await Promise.all([waiting, settler.settle(ps[1]!.claimed, ps[1]!.requirements)]);
    await settler.close();
    // Before: b's row alone named, the batch sent — b's adoptable, and its gas split, alone — a answered settled.
    expect(sent).toEqual([]);
    expect(results[0]).toMatchObject({ ok: false, refusal: "invalid_exact_evm_nonce_already_used" });
    expect(results[1]).toMatchObject({ ok: false, refusal: "unexpected_settle_error" });
    // b's claim given back (its payment may come again), a's left to the payment it is bound to.
    expect(await rowOf(ps[0]!)).toMatchObject({ status: "claimed", tx_hash: null, invoice_id: "another" });
    const [row] = await gw.app.db.query("SELECT 1 FROM x402_authorizations WHERE payer = $1 AND nonce = $2", [
      b.address.toLowerCase(),
      ps[1]!.claimed.authorization.nonce.toLowerCase(),
    ]);
    expect(row).toBeUndefined();
    expect(await gw.tokenBalance(a.address)).toBe(payerFunds);
    expect(await gw.tokenBalance(b.address)).toBe(payerFunds);
  });
});
