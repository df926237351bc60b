// Refunds of a USDC invoice on the Hardhat chain through the HTTP API: the invoice paid by a plain transfer to its
// deposit address, then refunded in part to the address that paid (a token transfer from the gateway's hot wallet,
// its tx hash the evidence, its gas booked on the rail's fee account), never more than came in; of an invoice paid
// by several addresses, to the one named, never more than it paid, and never to an address that did not pay.
import {
  type Account,
  type Address,
  createPublicClient,
  createWalletClient,
  http,
  parseEventLogs,
} from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvmRail, testUsdAbi } from "../../adapters/evm/index.ts";
import { assets, formatAmount, type Rail } from "../../core/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { recoverPendingRefunds } from "../../gateway/payments/index.ts";
import { sendGasPassOnce } from "../../gateway/settlement/index.ts";
import { wellFormedInvoice } from "../support/bolt11.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
const payerIndex = 7;

beforeAll(async () => {
  gw = await startGateway({ EVM_CONFIRMATIONS: "1" });
  await gw.send(gw.chain.accounts[0]!, {
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [gw.chain.accounts[payerIndex]!.address, 100_000_000n],
  });
});
afterAll(async () => {
  await gw?.app.close();
});

const payer = (): Account => gw.chain.accounts[payerIndex]!;

async function merchantPosted(): Promise<bigint> {
  const account = await gw.ledgerAccount(gw.app.demo!.merchant.ledgerAccountId);
  return account.creditsPosted - account.debitsPosted;
}

async function waitUntil<T>(what: string, read: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await read();
    if (value !== undefined) return value;
    await gw.rail.depositWatcher()?.catchUp(20);
    await gw.chain.networkHelpers.mine(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** An invoice of 10.00 USDC to the demo merchant, open: its id and deposit address. */
async function openInvoice(): Promise<{ invoiceId: string; depositAddress: Address }> {
  const created = await gw.call("POST", "/v1/invoices", {
    account: gw.app.demo!.merchant.id,
    asset: "USDC",
    amount: "10.00",
  });
  expect(created.status).toBe(201);
  return { invoiceId: created.body.id, depositAddress: created.body.instructions.deposit_address };
}

/** The payer's transfer of 10.00 to the invoice's deposit address, and the invoice once it reads paid. */
async function pay(invoice: { invoiceId: string; depositAddress: Address }) {
  await gw.send(payer(), {
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "transfer",
    args: [invoice.depositAddress, 10_000_000n],
  });
  return waitUntil("invoice paid", async () => {
    const read = await gw.call("GET", `/v1/invoices/${invoice.invoiceId}`);
    return read.body.status === "paid" ? read.body : undefined;
  });
}

/** An invoice of 10.00 paid by the payer: each test refunds one of its own. */
async function paidInvoice(): Promise<string> {
  const invoice = await openInvoice();
  await pay(invoice);
  return invoice.invoiceId;
}

/** The refund once it is no longer pending. */
const settled = (id: string) =>
  waitUntil("refund settled", async () => {
    const read = await gw.call("GET", `/v1/refunds/${id}`);
    return read.body.status === "pending" ? undefined : read.body;
  });

describe("refunds of a USDC invoice", () => {
  it("has an invoice of 10.00 paid by a transfer to its deposit address", async () => {
    const invoice = await openInvoice();
    const notPaid = await gw.call("POST", "/v1/refunds", { invoice: invoice.invoiceId });
    expect(notPaid.status).toBe(409);
    expect(notPaid.body.error.code).toBe("invoice_not_paid");
    const paid = await pay(invoice);
    expect(paid.payer.toLowerCase()).toBe(payer().address.toLowerCase());
  });

  it("pays part of it back to the address that paid, its gas booked as the rail's fee", async () => {
    const invoiceId = await paidInvoice();
    const merchantBefore = await merchantPosted();
    const tokensBefore = await gw.tokenBalance(payer().address);
    const created = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "4.00" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      amount: "4.000000",
      asset: "USDC",
      rail: "evm",
      destination: { type: "evm_address", address: expect.any(String) },
    });
    expect(created.body.destination.address.toLowerCase()).toBe(payer().address.toLowerCase());
    const refund = await settled(created.body.id);
    expect(refund).toMatchObject({
      status: "succeeded",
      evidence: { rail: "evm", tx_hash: expect.stringMatching(/^0x[0-9a-f]{64}$/) },
    });
    expect(refund.rail_reference).toBe(refund.evidence.tx_hash);

    // The chain agrees: a Transfer of exactly 4.00 to the payer in the evidence's transaction.
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: refund.evidence.tx_hash });
    const log = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: receipt.logs }).find(
      (l) => l.logIndex === refund.evidence.log_index,
    );
    expect(log?.args.value).toBe(4_000_000n);
    expect((await gw.tokenBalance(payer().address)) - tokensBefore).toBe(4_000_000n);
    expect(merchantBefore - (await merchantPosted())).toBe(4_000_000n);

    // The gas, in ETH, from the rail's fee account, with the refund as its evidence.
    const gas = await gw.app.db.query<{ amount: bigint }>(
      "SELECT amount FROM ledger_transfers WHERE code = $1 AND evidence->'detail'->>'refund' = $2",
      [transferCodes.payments.feePaid, refund.id],
    );
    const gwei = (receipt.gasUsed * receipt.effectiveGasPrice + 999_999_999n) / 1_000_000_000n;
    expect(gas.map((g) => g.amount)).toEqual([gwei]);
    expect(assets.ETH.scale).toBe(9);
    // The rail's send-gas pass finds the refund's booking of it: the refund's, nothing booked again.
    await sendGasPassOnce(gw.app.settlement, gw.rail, gw.chain.chain.id);
    const [sendGas] = await gw.app.db.query<{ booked_by: string }>(
      "SELECT booked_by FROM evm_send_gas WHERE attempt_id = $1",
      [refund.id],
    );
    expect(sendGas?.booked_by).toBe("refund");
    expect(
      await gw.app.ledger.lookupTransfers([
        derivedLedgerId(`${gw.chain.chain.id}:${refund.evidence.tx_hash.toLowerCase()}`, "send-gas"),
      ]),
    ).toEqual([]);
    // The refund says so: no fee in USDC, its gas as booked (before, only the ledger showed it).
    expect(refund).toMatchObject({
      fee: "0.000000",
      network_fee: { asset: "ETH", amount: formatAmount(gwei, assets.ETH) },
    });
  });

  it("never refunds more than came in, and takes no destination but an EVM address", async () => {
    // 4.00 of the 10.00 given back first: what remains is 6.00.
    const invoiceId = await paidInvoice();
    const part = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "4.00" });
    expect(part.status).toBe(201);
    expect((await settled(part.body.id)).status).toBe("succeeded");
    const transfers = await gw.app.db.query("SELECT count(*) FROM ledger_transfers");
    const over = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "6.01" });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe("refund_exceeds_remaining");
    const elsewhere = await gw.call("POST", "/v1/refunds", {
      invoice: invoiceId,
      destination: { type: "bolt11", invoice: wellFormedInvoice() },
    });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.body.error.param).toBe("destination.type");
    expect(await gw.app.db.query("SELECT count(*) FROM ledger_transfers")).toEqual(transfers);
  });
});

describe("a refund asked again while the node is out of reach", () => {
  /** The gateway's EVM rail on its database and wallet, but whose node never answers (nothing listens there). */
  function unreachableRail(): EvmRail {
    const transport = http("http://127.0.0.1:9", { retryCount: 0, timeout: 2_000 });
    return anotherProcessRail(gw, {
      publicClient: createPublicClient({ chain: gw.chain.chain, transport }),
      walletClient: createWalletClient({
        account: gw.chain.walletClient.account,
        chain: gw.chain.chain,
        transport,
      }),
      receiptTimeoutMs: 2_000,
    });
  }

  it("ends failed, its hold given back: the rail keeps that refusal and would never pay the refund", async () => {
    const invoiceId = await paidInvoice();
    const merchantBefore = await merchantPosted();
    // The first ask never answers (the process stopped mid-call): the refund stays pending for recovery.
    const rails = gw.app.payments.rails as Map<string, Rail>;
    const real = rails.get("evm")!;
    rails.set("evm", {
      ...real,
      execute: async () => {
        throw new Error("the process stopped before the rail answered");
      },
    });
    let created: Awaited<ReturnType<Gateway["call"]>>;
    try {
      created = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "1.00" });
    } finally {
      rails.set("evm", real);
    }
    expect(created.status).toBe(201);
    expect(created.body.status).toBe("pending");
    // Recovery asks again while the node is down: the EVM rail keeps its refusal under the refund's id.
    await recoverPendingRefunds(
      { ...gw.app.payments, rails: new Map([["evm", unreachableRail()]]) },
      { quietMs: 0 },
    );
    // Before: pending, and every later pass got the same kept refusal back: pending for good, its hold never freed.
    await recoverPendingRefunds(gw.app.payments, { quietMs: 0 });
    const read = await gw.call("GET", `/v1/refunds/${created.body.id}`);
    expect(read.body).toMatchObject({ status: "failed", failure: { code: "rail_unavailable" } });
    expect(await merchantPosted()).toBe(merchantBefore);
    const sent = await gw.app.db.query("SELECT 1 FROM evm_sends WHERE attempt_id = $1", [created.body.id]);
    expect(sent).toEqual([]);
  }, 60_000);
});

describe("an invoice paid by two addresses", () => {
  it("gives back to the first payer at most what it paid: a dust sender first does not get the customer's payment", async () => {
    const duster = gw.chain.accounts[6]!;
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [duster.address, 1_000n],
    });
    const invoice = await openInvoice();
    const { invoiceId } = invoice;
    // 0.000001 from someone who saw the address first, then the customer's 10.00.
    await gw.send(duster, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "transfer",
      args: [invoice.depositAddress, 1n],
    });
    await waitUntil("the dust credited", async () => {
      const read = await gw.call("GET", `/v1/invoices/${invoiceId}`);
      return read.body.received_amount === "0.000001" ? true : undefined;
    });
    const paid = await pay(invoice);
    expect(paid.payer.toLowerCase()).toBe(duster.address.toLowerCase());

    // Before: "all that is left", 10.000001, went to the dust's sender.
    const over = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "5.00" });
    expect(over.status).toBe(409);
    expect(over.body.error).toMatchObject({ code: "refund_exceeds_remaining", param: "amount" });
    const all = await gw.call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(all.status).toBe(201);
    expect(all.body).toMatchObject({ amount: "0.000001" });
    expect(all.body.destination.address.toLowerCase()).toBe(duster.address.toLowerCase());
    // Settled before it ends, so that its booking lands in no later test's balance.
    expect((await settled(all.body.id)).status).toBe("succeeded");
    const again = await gw.call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("refund_exceeds_remaining");

    // The customer's 10.00 goes back to the customer, named as the destination: in parts, never more than it paid.
    // Before: any destination of a USDC refund was refused, and the customer's money could not be given back at all.
    const customer = { type: "evm_address", address: payer().address.toLowerCase() };
    const tokensBefore = await gw.tokenBalance(payer().address);
    const part = await gw.call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "4.00",
      destination: customer,
    });
    expect(part.status).toBe(201);
    expect(part.body.destination.address.toLowerCase()).toBe(payer().address.toLowerCase());
    const tooMuch = await gw.call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "6.000001",
      destination: customer,
    });
    expect(tooMuch.status).toBe(409);
    expect(tooMuch.body.error).toMatchObject({ code: "refund_exceeds_remaining", param: "amount" });
    const rest = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, destination: customer });
    expect(rest.status).toBe(201);
    expect(rest.body.amount).toBe("6.000000");
    for (const id of [part.body.id, rest.body.id]) expect((await settled(id)).status).toBe("succeeded");
    expect((await gw.tokenBalance(payer().address)) - tokensBefore).toBe(10_000_000n);
    const emptied = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, destination: customer });
    expect(emptied.status).toBe(409);
    expect(emptied.body.error.code).toBe("refund_exceeds_remaining");

    // Money goes back only to where it came from: an address that never paid is refused.
    const stranger = await gw.call("POST", "/v1/refunds", {
      invoice: invoiceId,
      amount: "0.000001",
      destination: { type: "evm_address", address: gw.chain.accounts[5]!.address },
    });
    expect(stranger.status).toBe(400);
    expect(stranger.body.error).toMatchObject({ code: "parameter_invalid", param: "destination.address" });
  }, 60_000);
});

describe("an invoice one of whose deposits a reorg took back", () => {
  it("refunds only what still stands, and only to the address whose payment does: never to the one reorganised away", async () => {
    const first = gw.chain.accounts[8]!;
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [first.address, 4_000_000n],
    });
    const invoice = await openInvoice();
    const { invoiceId } = invoice;
    const transfer = (from: Account, amount: bigint) =>
      gw.send(from, {
        address: gw.chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "transfer",
        args: [invoice.depositAddress, amount],
      });
    const statusIs = (status: string) =>
      waitUntil(`invoice ${status}`, async () => {
        const read = await gw.call("GET", `/v1/invoices/${invoiceId}`);
        return read.body.status === status ? read.body : undefined;
      });
    // 4.00 from the first payer stays on the chain; the customer's 6.00 after it is reorganised away.
    await transfer(first, 4_000_000n);
    await waitUntil("the first 4.00 credited", async () => {
      const read = await gw.call("GET", `/v1/invoices/${invoiceId}`);
      return read.body.received_amount === "4.000000" ? true : undefined;
    });
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    await transfer(payer(), 6_000_000n);
    await statusIs("paid");
    await snapshot.restore(); // a branch without the 6.00, longer than the one that had it
    const reversed = await statusIs("reversed");
    expect(reversed.received_amount).toBe("10.000000");

    // The customer paid nothing that stands. Before: refused 409 invoice_not_paid, as if disputed, for as long as the
    // 6.00 stayed unmined; and, counted as a payment that stands, the customer would have been paid the first payer's
    // 4.00.
    const customer = { type: "evm_address", address: payer().address };
    const toCustomer = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, destination: customer });
    expect(toCustomer.status).toBe(409);
    expect(toCustomer.body.error).toMatchObject({ code: "refund_exceeds_remaining", param: "amount" });
    // The first payer's 4.00 is refundable to it, and no more.
    const tokensBefore = await gw.tokenBalance(first.address);
    const over = await gw.call("POST", "/v1/refunds", { invoice: invoiceId, amount: "4.000001" });
    expect(over.status).toBe(409);
    expect(over.body.error).toMatchObject({ code: "refund_exceeds_remaining", param: "amount" });
    const all = await gw.call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(all.status).toBe(201);
    expect(all.body.amount).toBe("4.000000");
    expect(all.body.destination.address.toLowerCase()).toBe(first.address.toLowerCase());
    expect((await settled(all.body.id)).status).toBe("succeeded");
    expect((await gw.tokenBalance(first.address)) - tokensBefore).toBe(4_000_000n);
    const again = await gw.call("POST", "/v1/refunds", { invoice: invoiceId });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("refund_exceeds_remaining");
  }, 120_000);
});
