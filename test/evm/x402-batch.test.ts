import { type Address, type Hex, HttpRequestError, keccak256, stringToHex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi, x402BatchSettlerAbi } from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import { divCeil, silentLogger } from "../../core/index.ts";
import type { AccountRecord } from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { getInvoice } from "../../gateway/settlement/index.ts";
import {
  type BatchSettler,
  type BatchSettlerSettings,
  bookBatchGas,
  createBatchSettler,
  splitEvenlyRemainderToFirst,
} from "../../gateway/x402/batch.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { createSingleSettler, type SettleResult } from "../../gateway/x402/settle.ts";
import { claim } from "../../gateway/x402/store.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { replaceTestUsdCode } from "../support/token-code.ts";
import {
  chainGettingLogs,
  type Gateway,
  mintedPayer,
  signedX402Payment,
  submitCopiedAuthorization,
  x402BatchGateway,
  x402BatchSettlerArtifact,
} from "./support.ts";

let gw: Gateway;
let settlerAddress: Address;
let chain: X402Chain;
const payerFunds = 1_000_000n; // one dollar each
const opened: BatchSettler[] = [];

beforeAll(async () => {
  ({ gw, settlerAddress, chain } = await x402BatchGateway());
});
afterAll(async () => {
  for (const settler of opened) await settler.close();
  await gw?.app.close();
});

function batchSettler(settings: Partial<BatchSettlerSettings>): BatchSettler {
  const settler = createBatchSettler({
    settlement: gw.app.settlement,
    senderOf: (c) =>
      c.rail === "evm"
        ? (batch) => gw.rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress })
        : null,
    single: createSingleSettler({ settlement: gw.app.settlement }),
    settings,
  });
  opened.push(settler);
  return settler;
}

let payerCount = 0;

/** A new payer holding `funds` TestUSD (no ETH: the gateway submits). */
async function newPayer(funds = payerFunds) {
  payerCount += 1;
  return await mintedPayer(gw, `x402 batch test payer ${payerCount}`, funds);
}

type Payer = Awaited<ReturnType<typeof newPayer>>;

/** Payers one after another: the minting account sends one transaction at a time. */
async function newPayers(funds: readonly bigint[]): Promise<Payer[]> {
  const payers: Payer[] = [];
  for (const amount of funds) payers.push(await newPayer(amount));
  return payers;
}

/**
 * The payer's signed x402 payment of `value`, credited to `merchant` (the demo merchant unless named; a signer other
 * than the payer makes a bad one).
 */
async function payment(
  payer: Payer,
  value: bigint,
  options: { signer?: Payer; nonce?: Hex; merchant?: AccountRecord } = {},
) {
  const nowS = BigInt(Math.floor(Date.now() / 1000));
  return await signedX402Payment(gw, chain, payer, value, {
    ...options,
    nonce: options.nonce ?? keccak256(stringToHex(`nonce ${payer.address} ${value} ${Math.random()}`)),
    window: { validAfter: nowS - 600n, validBefore: nowS + 3_600n },
    description: "x402 batch test",
  });
}

/** Claims the authorization as the facilitator and the paywall do, then settles it. */
async function claimAndSettle(
  settler: BatchSettler,
  p: Awaited<ReturnType<typeof payment>>,
): Promise<SettleResult | "already_claimed"> {
  if (!(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit))) return "already_claimed";
  return settler.settle(p.claimed, p.requirements);
}

const tokenBalance = (address: Address) => gw.tokenBalance(address);

/**
 * The chain's head, read from the node: viem answers getBlockNumber from a cache for the client's polling interval,
 * which may still hold a block from before the transactions just mined (the new payers' mints).
 */
const headBlock = () => gw.chain.publicClient.getBlockNumber({ cacheTime: 0 });

async function merchantBalance(merchant: AccountRecord): Promise<bigint> {
  const account = await gw.ledgerAccount(merchant.ledgerAccountId);
  return account.creditsPosted - account.debitsPosted;
}

/**
 * The deposit watcher is stopped: this credits every payment settled since the last catch-up, other tests' too
 * (a test that measures a merchant's balance pays a merchant of its own).
 */
async function creditFinal() {
  await gw.chain.networkHelpers.mine(1);
  await gw.rail.depositWatcher()!.catchUp(20);
}

function okResult(result: SettleResult | "already_claimed") {
  if (result === "already_claimed" || !result.ok)
    throw new Error(
      `expected a settlement, got ${JSON.stringify(result, (_, v) => (typeof v === "bigint" ? `${v}` : v))}`,
    );
  return result;
}

describe("X402BatchSettler's interface", () => {
  it("is the compiled contract's", async () => {
    const { abi } = await x402BatchSettlerArtifact();
    const names = new Set<string>(x402BatchSettlerAbi.map((item) => item.name));
    const compiled = abi.filter((item) => item.name !== undefined && names.has(item.name));
    expect(compiled).toEqual([...x402BatchSettlerAbi].sort((a, b) => a.name.localeCompare(b.name)));
    for (const [name, expected] of [
      ["ITEMS_MAX", 256n],
      ["ITEM_BYTES", 145n],
      ["FAILURE_GAS_RESERVE", 50_000n],
    ] as const) {
      const value = await gw.chain.publicClient.readContract({
        address: settlerAddress,
        abi: [
          {
            type: "function",
            name,
            stateMutability: "view",
            inputs: [],
            outputs: [{ name: "", type: "uint256" }],
          },
        ],
        functionName: name,
      });
      expect(value).toBe(expected);
    }
  });

  it("splits gas evenly, the remainder to the first", () => {
    expect(splitEvenlyRemainderToFirst(1_003n, 4)).toEqual([253n, 250n, 250n, 250n]);
    expect(splitEvenlyRemainderToFirst(3n, 5)).toEqual([3n, 0n, 0n, 0n, 0n]);
  });
});

describe("batch settlement on the Hardhat chain", () => {
  it("settles a batch of N in one transaction, each invoice credited and the gas booked once, split", async () => {
    const count = 8;
    const settler = batchSettler({ batchSizeMax: count, batchWaitMsMax: 60_000 });
    const payers = await newPayers(Array.from({ length: count }, () => payerFunds));
    const merchant = await gw.merchantAccount("x402 batch of N");
    const payments = await Promise.all(
      payers.map((payer, i) => payment(payer, 1_000n + BigInt(i), { merchant })),
    );
    const hotBefore = await tokenBalance(chain.hotWallet);

    const results = (await Promise.all(payments.map((p) => claimAndSettle(settler, p)))).map(okResult);

    const txHash = results[0]!.transaction;
    expect(results.every((r) => r.transaction === txHash)).toBe(true);
    expect(results.map((r) => r.amount)).toEqual(payments.map((p) => p.claimed.authorization.value));
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
    expect(receipt.to?.toLowerCase()).toBe(settlerAddress.toLowerCase());
    expect(receipt.from.toLowerCase()).toBe(chain.hotWallet.toLowerCase()); // the rail's hot wallet sent it
    const total = payments.reduce((sum, p) => sum + p.claimed.authorization.value, 0n);
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(total);
    for (const [i, payer] of payers.entries())
      expect(await tokenBalance(payer.address)).toBe(payerFunds - payments[i]!.claimed.authorization.value);

    // The watcher credits each seller's invoice from the token's AuthorizationUsed logs.
    await creditFinal();
    for (const result of results) {
      const invoice = await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: result.invoiceId });
      expect(invoice?.status).toBe("paid");
    }
    expect(await merchantBalance(merchant)).toBe(total); // a new account: all of it is this batch's
    // Each row records the block its value left the payer in (the paywall counts it against balances read before).
    for (const p of payments) expect(await spentBlockOf(p)).toBe(receipt.blockNumber);

    // Gas: booked once for the batch, one share per payment, summing to the transaction's gas.
    const gasGwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    const ids = results
      .map((r) => r.invoiceId)
      .sort()
      .map((invoiceId) =>
        derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}:${invoiceId}`, "x402-batch-gas"),
      );
    const booked = new Map((await gw.app.ledger.lookupTransfers(ids)).map((t) => [t.id, t.amount]));
    expect(ids.map((id) => booked.get(id))).toEqual(splitEvenlyRemainderToFirst(gasGwei, count));
  });

  it("books a batch's gas by its invoices, not their order: a booking finished in another order adds up", async () => {
    // The settler books in the batch's order and fails after the first share; the reconciler finishes it naming the
    // invoices in another order. Each share is booked once, and together they are the transaction's gas exactly.
    const txHash = keccak256(stringToHex(`gas order ${Date.now()}`));
    const invoices = ["inv_gas_order_c", "inv_gas_order_a", "inv_gas_order_b"];
    const gasWei = 1_000_000_000n * 1_003n; // 1,003 gwei over three: a remainder of 1
    const idOf = (invoiceId: string) =>
      derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}:${invoiceId}`, "x402-batch-gas");
    const feesBefore = await gw.gasFeesBooked();
    const ledger = gw.app.settlement.ledger;
    let allowed = 1;
    const stopping = new Proxy(ledger, {
      get(target, property, receiver) {
        if (property !== "createTransfers") return Reflect.get(target, property, receiver);
        return async (...args: Parameters<typeof ledger.createTransfers>) => {
          if (allowed-- <= 0) throw new Error("the ledger stopped answering");
          return target.createTransfers(...args);
        };
      },
    });
    await expect(
      bookBatchGas(
        { ...gw.app.settlement, ledger: stopping },
        chain,
        { txHash, gasWei },
        invoices,
        silentLogger,
      ),
    ).rejects.toThrow("the ledger stopped answering");
    const { logger, lines } = recordingLogger();
    await bookBatchGas(gw.app.settlement, chain, { txHash, gasWei }, [...invoices].reverse(), logger);
    const booked = await gw.app.ledger.lookupTransfers(invoices.map(idOf));
    expect(booked).toHaveLength(3);
    expect(booked.reduce((sum, t) => sum + t.amount, 0n)).toBe(1_003n);
    expect((await gw.gasFeesBooked()) - feesBefore).toBe(1_003n);
    expect(lines.filter((line) => line.level === "error")).toEqual([]);
  });

  it("logs as an error a gas share booked before with another amount, and leaves the booking as it was", async () => {
    // What an earlier version's split (or another receipt's gas) left under the same ids: nothing is moved
    // twice, and the difference between the ledger's gas and the chain's is said, not swallowed.
    const txHash = keccak256(stringToHex(`gas conflict ${Date.now()}`));
    const invoices = ["inv_gas_conflict_a", "inv_gas_conflict_b"];
    await bookBatchGas(
      gw.app.settlement,
      chain,
      { txHash, gasWei: 1_000_000_000n * 10n },
      invoices,
      silentLogger,
    );
    const feesBefore = await gw.gasFeesBooked();
    const { logger, lines } = recordingLogger();
    await bookBatchGas(gw.app.settlement, chain, { txHash, gasWei: 1_000_000_000n * 12n }, invoices, logger);
    expect((await gw.gasFeesBooked()) - feesBefore).toBe(0n);
    const errors = lines.filter((line) => line.level === "error");
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatchObject({ fields: { reference: txHash, gwei: "6", rail: chain.rail } });
  });

  it("credits each invoice its own amount when one payer's two authorizations of different values share a transaction", async () => {
    const settler = batchSettler({ batchSizeMax: 2, batchWaitMsMax: 60_000 });
    const payer = await newPayer();
    const merchant = await gw.merchantAccount("x402 batch, one payer's two values");
    const payments = [await payment(payer, 3n, { merchant }), await payment(payer, 5n, { merchant })];

    const results = (await Promise.all(payments.map((p) => claimAndSettle(settler, p)))).map(okResult);
    expect(results[0]!.transaction).toBe(results[1]!.transaction);

    // The token emits AuthorizationUsed then Transfer per authorization, both from the same payer: each invoice
    // is credited the Transfer of its own nonce, not the payer's first Transfer in the transaction.
    await creditFinal();
    for (const [i, result] of results.entries()) {
      const invoice = await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: result.invoiceId });
      expect(invoice).toMatchObject({
        status: "paid",
        receivedAmount: payments[i]!.claimed.authorization.value,
      });
    }
    expect(await merchantBalance(merchant)).toBe(8n); // a new account: all of it is these two's
  });

  it("fails a bad signature alone and leaves a payer short of funds pending, the rest settle in the same transaction", async () => {
    const settler = batchSettler({ batchSizeMax: 4, batchWaitMsMax: 60_000 });
    const [good1, forged, poor, good2] = await newPayers([payerFunds, payerFunds, 10n, payerFunds]);
    const stranger = await newPayer(0n);
    const payments = [
      await payment(good1!, 500n),
      await payment(forged!, 500n, { signer: stranger }),
      await payment(poor!, 500n),
      await payment(good2!, 700n),
    ];
    const hotBefore = await tokenBalance(chain.hotWallet);
    const results = await Promise.all(payments.map((p) => claimAndSettle(settler, p)));
    const [first, badSignature, shortOfFunds, last] = results;
    expect(okResult(first!).transaction).toBe(okResult(last!).transaction);
    expect(badSignature).toMatchObject({ ok: false, refusal: "invalid_exact_evm_payload_signature" });
    // The token's refusal undid the nonce's mark: the authorization is unused and still valid, the payer answered
    // pending (before: insufficient_funds, its row failed, while anyone holding it could still mine it).
    expect(shortOfFunds).toMatchObject({ ok: false, refusal: "unexpected_settle_error", pending: true });
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(1_200n);
    expect(await tokenBalance(forged!.address)).toBe(payerFunds);
    expect(await tokenBalance(poor!.address)).toBe(10n);
    const rowOf = async (payer: Payer) =>
      (
        await gw.app.db.query<{ status: string; failure: string | null }>(
          "SELECT status, failure FROM x402_authorizations WHERE payer = $1",
          [payer.address.toLowerCase()],
        )
      )[0];
    expect(await rowOf(forged!)).toEqual({ status: "failed", failure: "signature_invalid" });
    expect(await rowOf(poor!)).toEqual({ status: "submitted", failure: null });
    // Why it stays open: once the payer's balance is back, whoever copied the authorization mines it.
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [poor!.address, 490n],
    });
    const copy = await submitCopiedAuthorization(gw, chain.token, payments[2]!.claimed);
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: copy });
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(1_700n);
  });

  /**
   * Two payments settled in one batch read through `on`, while a stranger's copy of the second's authorization (or
   * `first`, another authorization of its nonce), sent once the batch is, is mined first in the same block: the token
   * refuses that item as spent. The two answers and the copy's transaction.
   */
  async function frontRunInBatch(
    payments: Awaited<ReturnType<typeof payment>>[],
    on: X402Chain = chain,
    first: Parameters<typeof submitCopiedAuthorization>[2] = payments[1]!.claimed,
  ) {
    const settler = batchSettler({ batchSizeMax: 2, batchWaitMsMax: 60_000 });
    await gw.setAutomine(false);
    let copyTx: Hex;
    let settling: Promise<(SettleResult | "already_claimed")[]>;
    try {
      settling = Promise.all(
        payments.map((p) =>
          claimAndSettle(settler, { ...p, requirements: { ...p.requirements, chain: on } }),
        ),
      );
      // The batch's transaction is in the mempool: the hot wallet's pending count is past its mined one.
      const countOf = (blockTag: "latest" | "pending") =>
        gw.chain.publicClient.getTransactionCount({ address: chain.hotWallet, blockTag });
      const mined = await countOf("latest");
      await expect.poll(() => countOf("pending"), { timeout: 10_000 }).toBeGreaterThan(mined);
      copyTx = await submitCopiedAuthorization(gw, chain.token, first);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await gw.setAutomine(true);
    }
    const [settled, front] = await settling;
    return { settled: settled!, front: front!, copyTx };
  }

  it("answers an item front-run by a copy of its authorization as settled, by the copy that paid the hot wallet", async () => {
    const [first, copied] = await newPayers([payerFunds, payerFunds]);
    const payments = [await payment(first!, 400n), await payment(copied!, 450n)];
    const hotBefore = await tokenBalance(chain.hotWallet);
    const { settled, front, copyTx } = await frontRunInBatch(payments);
    // Before: the copied item was refused (the token refused it in the batch), while its value had come by the copy.
    expect(okResult(front).transaction).toBe(copyTx);
    expect(okResult(settled).transaction).not.toBe(copyTx);
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(850n);
    const [row] = await gw.app.db.query<{ status: string }>(
      "SELECT status FROM x402_authorizations WHERE payer = $1",
      [copied!.address.toLowerCase()],
    );
    expect(row).toEqual({ status: "settled" });
  });

  it("answers an item front-run by a copy as settled on a token that refuses with USDC's reason strings", async () => {
    const { restore } = await replaceTestUsdCode(gw.chain, "FiatTokenReasonsTestUSD");
    try {
      const [first, copied] = await newPayers([payerFunds, payerFunds]);
      const payments = [await payment(first!, 420n), await payment(copied!, 470n)];
      const { settled, front, copyTx } = await frontRunInBatch(payments);
      okResult(settled);
      // Before: "FiatTokenV2: authorization is used or canceled" left the batch's AuthorizationFailed only
      // Error(string)'s selector: refused as "rejected", and no copy was looked for.
      expect(okResult(front).transaction).toBe(copyTx);
    } finally {
      await restore();
    }
  });

  it("refuses as spent an item whose nonce the payer used elsewhere, on a token that refuses with USDC's strings", async () => {
    const { restore } = await replaceTestUsdCode(gw.chain, "FiatTokenReasonsTestUSD");
    try {
      const [first, spender] = await newPayers([payerFunds, payerFunds]);
      const payments = [await payment(first!, 430n), await payment(spender!, 480n)];
      // The payer's own authorization of the same nonce, to another address and for another amount.
      const mine = payments[1]!.claimed.authorization;
      const elsewhere = { ...mine, to: gw.chain.accounts[5]!.address, value: 200n };
      const signature = await spender!.signTypedData(
        transferWithAuthorizationTypedData(
          { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
          elsewhere,
        ),
      );
      const { settled, front } = await frontRunInBatch(payments, chain, {
        authorization: elsewhere,
        signature,
      });
      okResult(settled);
      // Before: the reason string's selector alone, "rejected": invalid_transaction_state, though the token says why.
      expect(front).toMatchObject({ ok: false, refusal: "invalid_exact_evm_nonce_already_used" });
    } finally {
      await restore();
    }
  });

  it("leaves an item refused as spent submitted, answered pending, while the node cannot search for a copy", async () => {
    const outOfReach = chainGettingLogs(gw, chain, () => {
      throw new HttpRequestError({ url: "http://node.invalid", details: "fetch failed" });
    });
    const [first, copied] = await newPayers([payerFunds, payerFunds]);
    const payments = [await payment(first!, 410n), await payment(copied!, 460n)];
    const { settled, front } = await frontRunInBatch(payments, outOfReach);
    okResult(settled);
    // Before: refused invalid_exact_evm_nonce_already_used and failed, while the payer may have paid by the copy.
    expect(front).toMatchObject({ ok: false, refusal: "unexpected_settle_error", pending: true });
    const [row] = await gw.app.db.query<{ status: string; tx_hash: string }>(
      "SELECT status, tx_hash FROM x402_authorizations WHERE payer = $1",
      [copied!.address.toLowerCase()],
    );
    expect(row).toEqual({ status: "submitted", tx_hash: okResult(settled).transaction });
  });

  it("refuses a replayed authorization: claimed again, twice in one queue, or settled again after it paid", async () => {
    const settler = batchSettler({ batchSizeMax: 10, batchWaitMsMax: 200 });
    const payer = await newPayer();
    const p = await payment(payer, 900n);
    const hotBefore = await tokenBalance(chain.hotWallet);

    // The claim table refuses the second claim of the same authorization (any process, any tenant).
    const settling = claimAndSettle(settler, p);
    expect(await claimAndSettle(settler, p)).toBe("already_claimed");
    // Past the claim (a caller that did not claim): the queue holds it once.
    expect(await settler.settle(p.claimed, p.requirements)).toMatchObject({
      ok: false,
      refusal: "invalid_exact_evm_nonce_already_used",
    });
    okResult(await settling);
    // Once settled, its nonce belongs to its invoice, and the token has spent it: nothing is sent or paid again.
    expect(await settler.settle(p.claimed, p.requirements)).toMatchObject({
      ok: false,
      refusal: "invalid_exact_evm_nonce_already_used",
    });
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(900n);
    expect(await tokenBalance(payer.address)).toBe(payerFunds - 900n);
  });

  it("settles two payers' authorizations with the same nonce in one batch, each once (a nonce is its payer's own)", async () => {
    const settler = batchSettler({ batchSizeMax: 2, batchWaitMsMax: 60_000 });
    const [first, second] = await newPayers([payerFunds, payerFunds]);
    const nonce = keccak256(stringToHex(`shared nonce ${Math.random()}`));
    const payments = [await payment(first!, 300n, { nonce }), await payment(second!, 400n, { nonce })];
    const hotBefore = await tokenBalance(chain.hotWallet);
    const results = (await Promise.all(payments.map((p) => claimAndSettle(settler, p)))).map(okResult);
    expect(results[0]!.transaction).toBe(results[1]!.transaction);
    expect((await tokenBalance(chain.hotWallet)) - hotBefore).toBe(700n);
    expect(await tokenBalance(first!.address)).toBe(payerFunds - 300n);
    expect(await tokenBalance(second!.address)).toBe(payerFunds - 400n);
    await creditFinal();
    for (const result of results) {
      const invoice = await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: result.invoiceId });
      expect(invoice?.status).toBe("paid");
    }
  });

  it("sends a lone payment once its wait is over, and a later one rides in the same batch", async () => {
    const waitMs = 500;
    const settler = batchSettler({ batchSizeMax: 100, batchWaitMsMax: waitMs });
    const [early, late] = await newPayers([payerFunds, payerFunds]);
    const [p1, p2] = await Promise.all([payment(early!, 10n), payment(late!, 20n)]);
    const blockBefore = await headBlock();
    const startedMs = Date.now();
    const first = claimAndSettle(settler, p1);
    await new Promise((resolve) => setTimeout(resolve, waitMs / 2));
    // Nothing sent yet: the batch is waiting for more.
    expect(await headBlock()).toBe(blockBefore);
    const second = claimAndSettle(settler, p2);
    const [r1, r2] = [okResult(await first), okResult(await second)];
    const elapsedMs = Date.now() - startedMs;
    expect(r1.transaction).toBe(r2.transaction);
    // The bound: sent when the oldest had waited batchWaitMsMax (not before), answered once mined.
    expect(elapsedMs).toBeGreaterThanOrEqual(waitMs);
    expect(elapsedMs).toBeLessThan(waitMs + 10_000); // automining: the receipt is there at once
  });
});

// ---- faults around settlement: the ledger or the database failing before or after the transaction

/** The app's settlement, its ledger refusing fee bookings (the gas) the first `failures` times it is asked. */
function settlementWithFailingGas(failures: number) {
  const ledger = gw.app.settlement.ledger;
  let left = failures;
  const failing = new Proxy(ledger, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== "createTransfers" || typeof value !== "function") return value;
      return async (transfers: readonly { code: number }[], ...rest: unknown[]) => {
        if (left > 0 && transfers.some((t) => t.code === 9 /* payments.feePaid */)) {
          left -= 1;
          throw new Error("the ledger is unavailable (test)");
        }
        return value.call(target, transfers, ...rest);
      };
    },
  });
  return { ...gw.app.settlement, ledger: failing };
}

/** The app's settlement, its database refusing to write invoices. */
function settlementWithoutInvoices() {
  const db = gw.app.settlement.db;
  const failing = new Proxy(db, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== "query" || typeof value !== "function") return value;
      return async (sql: string, ...rest: unknown[]) => {
        if (sql.includes("INSERT INTO invoices")) throw new Error("the database is unavailable (test)");
        return value.call(target, sql, ...rest);
      };
    },
  });
  return { ...gw.app.settlement, db: failing };
}

/** The app's settlement, its database losing the answer of the claim's binding to its invoice (written all the same). */
function settlementLosingBindings() {
  const db = gw.app.settlement.db;
  const losing = new Proxy(db, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== "query" || typeof value !== "function") return value;
      return async (sql: string, ...rest: unknown[]) => {
        const answer = await value.call(target, sql, ...rest);
        const params = rest[0] as unknown[] | undefined;
        if (sql.includes("UPDATE x402_authorizations") && params?.[4] === "claimed")
          throw new Error("the connection dropped after the commit (test)");
        return answer;
      };
    },
  });
  return { ...gw.app.settlement, db: losing };
}

async function authorizationRow(p: Awaited<ReturnType<typeof payment>>) {
  const [row] = await gw.app.db.query<{ status: string; invoice_id: string | null; tx_hash: string | null }>(
    "SELECT status, invoice_id, tx_hash FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
    [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
  );
  return row ?? null;
}

/** The block the row says the authorization's value left its payer by (null: not recorded). */
async function spentBlockOf(p: Awaited<ReturnType<typeof payment>>) {
  const [row] = await gw.app.db.query<{ spent_block: string | null }>(
    "SELECT spent_block::text AS spent_block FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
    [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
  );
  return row?.spent_block == null ? null : BigInt(row.spent_block);
}

const gasIdOf = (txHash: Hex) => derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}`, "x402-gas");

describe("settlement faults", () => {
  it("answers a mined payment's success when booking its gas fails: retried and booked, or logged and left", async () => {
    // Fails once: the retry books the gas.
    const once = createSingleSettler({ settlement: settlementWithFailingGas(1) });
    const p1 = await payment(await newPayer(), 700n);
    expect(await claim(gw.app.db, chain, p1.claimed.authorization, p1.claimed.credit)).toBe(true);
    const r1 = okResult(await once.settle(p1.claimed, p1.requirements));
    expect(await authorizationRow(p1)).toEqual({
      status: "settled",
      invoice_id: r1.invoiceId,
      tx_hash: r1.transaction,
    });
    expect(await gw.app.ledger.lookupTransfers([gasIdOf(r1.transaction)])).toHaveLength(1);

    // Fails every time: still the payment's success with its transaction; the row says settled, the gas is not
    // booked (its id is the transaction's: a later booking books it once).
    const always = createSingleSettler({ settlement: settlementWithFailingGas(1_000) });
    const payer2 = await newPayer();
    const p2 = await payment(payer2, 800n);
    expect(await claim(gw.app.db, chain, p2.claimed.authorization, p2.claimed.credit)).toBe(true);
    const r2 = okResult(await always.settle(p2.claimed, p2.requirements));
    expect(await tokenBalance(payer2.address)).toBe(payerFunds - 800n);
    expect((await authorizationRow(p2))?.status).toBe("settled");
    expect(await gw.app.ledger.lookupTransfers([gasIdOf(r2.transaction)])).toHaveLength(0);
    await creditFinal();
    expect((await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: r2.invoiceId }))?.status).toBe(
      "paid",
    );

    // The batch settler too: every payment of a mined batch hears its success. Its gas not booked, each row is left
    // `submitted` with the batch, for reconciliation to book the gas and then settle it (x402-reconcile.test.ts).
    const batch = createBatchSettler({
      settlement: settlementWithFailingGas(1_000),
      senderOf: () => (b) => gw.rail.settleAuthorizationBatch({ ...b, settler: settlerAddress }),
      single: always,
      settings: { batchSizeMax: 2, batchWaitMsMax: 60_000 },
    });
    opened.push(batch);
    const ps = await Promise.all(
      (await newPayers([payerFunds, payerFunds])).map((payer) => payment(payer, 600n)),
    );
    const results = (await Promise.all(ps.map((p) => claimAndSettle(batch, p)))).map(okResult);
    expect(results[0]!.transaction).toBe(results[1]!.transaction);
    for (const p of ps)
      expect(await authorizationRow(p)).toMatchObject({
        status: "submitted",
        tx_hash: results[0]!.transaction,
      });
  });

  it("gives the claim back when booking the invoice throws, and the same authorization then books cleanly", async () => {
    const broken = createSingleSettler({ settlement: settlementWithoutInvoices() });
    const payer = await newPayer();
    const p = await payment(payer, 500n);
    expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
    expect(await broken.settle(p.claimed, p.requirements)).toMatchObject({
      ok: false,
      refusal: "unexpected_settle_error",
    });
    expect(await authorizationRow(p)).toBeNull();
    expect(await tokenBalance(payer.address)).toBe(payerFunds);
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
    const result = okResult(await settler.settle(p.claimed, p.requirements));
    expect(await authorizationRow(p)).toEqual({
      status: "settled",
      invoice_id: result.invoiceId,
      tx_hash: result.transaction,
    });
    const mined = await gw.chain.publicClient.getTransactionReceipt({ hash: result.transaction as Hex });
    expect(await spentBlockOf(p)).toBe(mined.blockNumber);
    expect(await tokenBalance(payer.address)).toBe(payerFunds - 500n);
  });

  it("books the gas of a batch that reverted as a whole, split over its payments as a mined batch's", async () => {
    // X402BatchSettler catches each item's failure, so a whole-batch revert cannot be provoked through it here: the
    // port reports the real mined batch as reverted, with the gas its receipt shows.
    const reverted = createBatchSettler({
      settlement: gw.app.settlement,
      senderOf: () => async (b) => {
        const sent = await gw.rail.settleAuthorizationBatch({ ...b, settler: settlerAddress });
        if (sent.status !== "mined") throw new Error(`the batch was not mined: ${sent.status}`);
        return {
          status: "failed",
          message: `transaction ${sent.txHash} reverted`,
          revert: null,
          txHash: sent.txHash,
          gasWei: sent.gasWei,
        };
      },
      single: createSingleSettler({ settlement: gw.app.settlement }),
      settings: { batchSizeMax: 3, batchWaitMsMax: 60_000 },
    });
    opened.push(reverted);
    const payers = await newPayers([payerFunds, payerFunds, payerFunds]);
    const payments = await Promise.all(payers.map((payer, i) => payment(payer, 100n + BigInt(i))));
    const results = await Promise.all(payments.map((p) => claimAndSettle(reverted, p)));
    for (const result of results)
      expect(result).toMatchObject({ ok: false, refusal: "invalid_transaction_state" });
    const rows = await Promise.all(payments.map((p) => authorizationRow(p)));
    const txHash = rows[0]!.tx_hash as Hex;
    expect(rows.map((row) => row?.status)).toEqual(["failed", "failed", "failed"]);
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
    const gasGwei = divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
    // In the batch's order: the order the items were queued (their invoices' ids as the settler bound them).
    const ids = rows.map((row) =>
      derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}:${row!.invoice_id}`, "x402-batch-gas"),
    );
    const booked = (await gw.app.ledger.lookupTransfers(ids)).map((t) => t.amount);
    expect(booked.reduce((sum, amount) => sum + amount, 0n)).toBe(gasGwei);
    expect(booked).toHaveLength(3);
  });

  it("gives the claim back when its binding to the invoice committed but its answer was lost", async () => {
    const losing = createSingleSettler({ settlement: settlementLosingBindings() });
    const payer = await newPayer();
    const p = await payment(payer, 450n);
    expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
    expect(await losing.settle(p.claimed, p.requirements)).toMatchObject({
      ok: false,
      refusal: "unexpected_settle_error",
    });
    // Released, not left claimed for ever: the same authorization then pays.
    expect(await authorizationRow(p)).toBeNull();
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
    okResult(await settler.settle(p.claimed, p.requirements));
    expect(await tokenBalance(payer.address)).toBe(payerFunds - 450n);
  });

  it("releases a batch that was not sent, unbinding its invoices, and the authorization re-presented books cleanly", async () => {
    // The token is no batch settler: the estimate reverts and nothing is sent.
    const unsent = createBatchSettler({
      settlement: gw.app.settlement,
      senderOf: () => (b) => gw.rail.settleAuthorizationBatch({ ...b, settler: chain.token }),
      single: createSingleSettler({ settlement: gw.app.settlement }),
      settings: { batchSizeMax: 1, batchWaitMsMax: 0 },
    });
    opened.push(unsent);
    const payer = await newPayer();
    const p = await payment(payer, 400n);
    expect(await claimAndSettle(unsent, p)).toMatchObject({ ok: false, refusal: "unexpected_settle_error" });
    expect(await authorizationRow(p)).toBeNull();

    const settler = batchSettler({ batchSizeMax: 1, batchWaitMsMax: 0 });
    const result = okResult(await claimAndSettle(settler, p));
    expect(await authorizationRow(p)).toEqual({
      status: "settled",
      invoice_id: result.invoiceId,
      tx_hash: result.transaction,
    });
    expect(await tokenBalance(payer.address)).toBe(payerFunds - 400n);
    await creditFinal();
    expect(
      (await getInvoice(gw.app.db, { tenantId: gw.app.demo!.tenantId, id: result.invoiceId }))?.status,
    ).toBe("paid");
  });
});
