// An x402 single settlement's gas is booked by x402 (x402/settle.ts bookGas) and by the EVM rail's send-gas pass
// (bookSendGas) under one id: whichever books second must find exactly what the first wrote — amount, accounts and
// evidence — or the ledger answers exists_with_different_evidence. On PGlite, both orders.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, type Logger } from "../../core/index.ts";
import { recordingLogger } from "../../test/support/recording-logger.ts";
import { createAccountCache } from "../accounts/index.ts";
import { gatewayMigrations } from "../app.ts";
import { type Db, migrate, openPglite } from "../db/index.ts";
import { createLedger, type Ledger, ledgerMigrations } from "../ledger/index.ts";
import { gatewayLedgerParams } from "../ledger-params.ts";
import { bookGas } from "../x402/settle.ts";
import {
  bookRailGas,
  bookSendGas,
  chainTransactionLedgerId,
  type MinedSendGas,
  x402GasId,
} from "./evm-send-gas.ts";
import { createOpenInvoiceMemory, type SettlementDeps } from "./index.ts";

let db: Db;
let ledger: Ledger;
const errors: unknown[] = [];
const logger = {
  error: (...args: unknown[]) => errors.push(args),
  warn: () => {},
  info: () => {},
  debug: () => {},
  child: () => logger,
} as unknown as Logger;

beforeAll(async () => {
  db = await openPglite(undefined);
  await migrate(db, [ledgerMigrations, gatewayMigrations]);
  ledger = createLedger({ ...gatewayLedgerParams, db });
});
afterAll(async () => {
  await ledger?.close();
  await db?.close();
});

const deps = (): SettlementDeps => ({
  db,
  ledger,
  accounts: createAccountCache({ sql: db }, { entriesMax: 10 }),
  openInvoices: createOpenInvoiceMemory({ entriesMax: 10 }),
  rails: new Map(),
});

const chain = { chainId: 31337, rail: "evm" } as Parameters<typeof bookGas>[1];
/** 21,000 gas at 1 gwei + 7 wei: rounded up to 21,001 gwei. */
const wei = 21_000n * 1_000_000_007n;

const mined = (txHash: string): MinedSendGas => ({
  key: `transfer-auth:${txHash}`,
  kind: "transfer_authorization",
  txHash,
  hashes: [txHash],
  reverted: false,
  gas: {
    asset: assets.ETH,
    amount: 21_001n,
    detail: { gasUsed: "21000", effectiveGasPrice: "1000000007", wei: wei.toString() },
  },
  owner: null,
});

describe("an x402 settlement's gas, booked by x402 and by the send-gas pass", () => {
  it.each([
    ["x402 first", "0x01"],
    ["the pass first", "0x02"],
  ])("books it once whichever is first (%s)", async (order, suffix) => {
    const txHash = `0x${suffix.slice(2).padStart(64, "a")}` as `0x${string}`;
    const byX402 = () => bookGas(deps(), chain, txHash, wei, logger);
    const byPass = () => bookSendGas(deps(), "evm", chain.chainId, mined(txHash));
    if (order === "x402 first") {
      await byX402();
      await expect(byPass()).resolves.toEqual({ booked: true, bookedBy: "x402_gas" });
    } else {
      await byPass();
      await byX402();
    }
    expect(errors).toEqual([]);
    const [booked] = await ledger.lookupTransfers([x402GasId(chain.chainId, txHash)]);
    expect(booked?.amount).toBe(21_001n);
  });
});

describe("a send's gas, booked by the pass from its receipt and from what was stored of it", () => {
  // As the rail hands it over: from the receipt (adapters/evm payout.ts gasPaid), or, the node having pruned that,
  // from the transaction and gas stored when it was mined (send-gas.ts storedMinedOf: the wei alone).
  const fromReceipt = { gasUsed: "21000", effectiveGasPrice: "1000000007", wei: wei.toString() };
  const fromStored = { wei: wei.toString() };
  const approve = (txHash: string, detail: Record<string, string>): MinedSendGas => ({
    key: `approve:${txHash}`,
    kind: "approve",
    txHash,
    hashes: [txHash],
    reverted: false,
    gas: { asset: assets.ETH, amount: 21_001n, detail },
    owner: null,
  });

  it.each([
    ["from its receipt first", "0x03", fromReceipt, fromStored],
    ["from what was stored first", "0x04", fromStored, fromReceipt],
  ])("books it once, whichever way repeats it (%s)", async (_order, suffix, first, second) => {
    const txHash = `0x${suffix.slice(2).padStart(64, "b")}`;
    await expect(bookSendGas(deps(), "evm", 31337, approve(txHash, first))).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
    // Before: the ledger found the first booking's evidence with other detail, and the repeat threw
    // SettlementInvariantError ("booked with other terms") at every pass.
    await expect(bookSendGas(deps(), "evm", 31337, approve(txHash, second))).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
    const booked = await ledger.lookupTransfers([chainTransactionLedgerId(31337, txHash, "send-gas")]);
    expect(booked.map((transfer) => transfer.amount)).toEqual([21_001n]);
    expect(booked[0]?.evidence).toEqual({
      rail: "evm",
      reference: txHash,
      detail: {
        kind: "send_gas",
        send: `approve:${txHash}`,
        sent: "approve",
        reverted: "false",
        wei: wei.toString(),
      },
    });
  });
});

describe("a send's gas an earlier version booked with its receipt's gas in the evidence", () => {
  /** 21,000 gas at 1 gwei + 7 wei, and an OP-stack chain's L1 data fee of 5,000 gwei + 3 wei besides. */
  const l1Fee = 5_000_000_000_003n;
  const payout = (txHash: string, gas: { amount: bigint; wei: bigint }): MinedSendGas => ({
    key: `att_${txHash.slice(-6)}`,
    kind: "payout",
    txHash,
    hashes: [txHash],
    reverted: false,
    gas: { asset: assets.ETH, amount: gas.amount, detail: { wei: gas.wei.toString() } },
    owner: null,
  });
  /** As bookSendGas wrote it before 9b9ea96: the receipt's gas used, price and L1 fee named, under the same id. */
  const bookedTheOldWay = (send: MinedSendGas, gas: { amount: bigint; wei: bigint; l1Fee?: bigint }) =>
    bookRailGas(deps(), {
      rail: "evm",
      gas: { asset: assets.ETH, amount: gas.amount, detail: {} },
      id: chainTransactionLedgerId(31337, send.txHash, "send-gas"),
      evidence: {
        rail: "evm",
        reference: send.txHash,
        detail: {
          kind: "send_gas",
          send: send.key,
          sent: send.kind,
          reverted: "false",
          gasUsed: "21000",
          effectiveGasPrice: "1000000007",
          ...(gas.l1Fee === undefined ? {} : { l1Fee: gas.l1Fee.toString() }),
          wei: gas.wei.toString(),
        },
      },
      label: "the old way",
    });
  const bookedUnder = (txHash: string) =>
    ledger.lookupTransfers([chainTransactionLedgerId(31337, txHash, "send-gas")]);

  it("is found booked by the repeat in today's shape: nothing more booked, nothing thrown", async () => {
    const txHash = `0x${"c".repeat(63)}1`;
    const send = payout(txHash, { amount: 21_001n, wei });
    await bookedTheOldWay(send, { amount: 21_001n, wei });
    const { logger, lines } = recordingLogger();
    // Before: SettlementInvariantError ("booked with other terms") at every pass, the send never marked done.
    await expect(bookSendGas({ ...deps(), logger }, "evm", 31337, send)).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
    const booked = await bookedUnder(txHash);
    expect(booked.map((transfer) => transfer.amount)).toEqual([21_001n]);
    expect(booked[0]?.evidence?.detail).toMatchObject({ gasUsed: "21000" });
    expect(lines).toEqual([]);
  });

  it("stands for more, booked from the receipt with an OP-stack L1 fee, against a repeat from gas stored without it: said", async () => {
    const txHash = `0x${"c".repeat(63)}2`;
    const withL1 = wei + l1Fee;
    const send = payout(txHash, { amount: 21_001n, wei });
    await bookedTheOldWay(send, { amount: 26_001n, wei: withL1, l1Fee });
    const { logger, lines } = recordingLogger();
    await expect(bookSendGas({ ...deps(), logger }, "evm", 31337, send)).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
    expect((await bookedUnder(txHash)).map((transfer) => transfer.amount)).toEqual([26_001n]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "warn",
      fields: {
        send: send.key,
        bookedGwei: "26001",
        bookedWei: withL1.toString(),
        repeatedGwei: "21001",
        repeatedWei: wei.toString(),
      },
    });
  });

  it("books the L1 fee apart, booked from the receipt without it (before ac492c7) and repeated from the receipt with it: said", async () => {
    const txHash = `0x${"c".repeat(63)}5`;
    const withL1 = wei + l1Fee;
    const send = payout(txHash, { amount: 26_001n, wei: withL1 });
    const fromReceipt: MinedSendGas = {
      ...send,
      gas: {
        ...send.gas,
        detail: {
          gasUsed: "21000",
          effectiveGasPrice: "1000000007",
          l1Fee: l1Fee.toString(),
          wei: withL1.toString(),
        },
      },
    };
    await bookedTheOldWay(send, { amount: 21_001n, wei });
    const l1Id = chainTransactionLedgerId(31337, txHash, "send-gas-l1");
    // What the ledger holds under the L1 fee's id as each line is said (asked then, answered in order).
    const heldWhenSaid: Promise<unknown[]>[] = [];
    const { logger, lines } = recordingLogger({
      onLine: () => heldWhenSaid.push(ledger.lookupTransfers([l1Id])),
    });
    // Before: SettlementInvariantError ("booked with other terms") at every pass, the send never done.
    for (let pass = 0; pass < 2; pass++)
      await expect(bookSendGas({ ...deps(), logger }, "evm", 31337, fromReceipt)).resolves.toEqual({
        booked: true,
        bookedBy: "send_gas",
      });
    const [rest] = await ledger.lookupTransfers([l1Id]);
    expect([(await bookedUnder(txHash))[0]?.amount, rest?.amount]).toEqual([21_001n, 5_000n]);
    expect(rest?.evidence?.detail).toEqual({ kind: "send_gas_l1", send: send.key, l1Fee: l1Fee.toString() });
    expect(lines[0]).toMatchObject({
      level: "warn",
      message: expect.stringMatching(/the L1 fee is booked under an id of its own \(5000 gwei\)/),
      fields: {
        send: send.key,
        bookedGwei: "21001",
        bookedWei: wei.toString(),
        repeatedGwei: "26001",
        repeatedWei: withL1.toString(),
        l1FeeBookedGwei: "5000",
      },
    });
    // Said once booked. Before: said as booked before the booking was tried.
    expect(await heldWhenSaid[0]).toHaveLength(1);
    // Repeated for anything but exactly its L1 fee more: a conflict still.
    const other = `0x${"c".repeat(63)}6`;
    const offByOne = payout(other, { amount: 26_001n, wei: withL1 + 1n });
    await bookedTheOldWay(offByOne, { amount: 21_001n, wei });
    await expect(
      bookSendGas(deps(), "evm", 31337, {
        ...offByOne,
        gas: { ...offByOne.gas, detail: { ...fromReceipt.gas.detail, wei: (withL1 + 1n).toString() } },
      }),
    ).rejects.toThrow(/booked with other terms/);
  });

  it("books nothing apart when the L1 fee rounds into the gwei booked without it: said so, not said booked", async () => {
    const txHash = `0x${"c".repeat(63)}7`;
    // 3 wei of L1 fee: 21,000 gas at 1 gwei + 7 wei and it round up to the same 21,001 gwei.
    const withL1 = wei + 3n;
    const send = payout(txHash, { amount: 21_001n, wei: withL1 });
    const fromReceipt: MinedSendGas = {
      ...send,
      gas: {
        ...send.gas,
        detail: { gasUsed: "21000", effectiveGasPrice: "1000000007", l1Fee: "3", wei: withL1.toString() },
      },
    };
    await bookedTheOldWay(send, { amount: 21_001n, wei });
    const { logger, lines } = recordingLogger();
    await expect(bookSendGas({ ...deps(), logger }, "evm", 31337, fromReceipt)).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
    expect(await ledger.lookupTransfers([chainTransactionLedgerId(31337, txHash, "send-gas-l1")])).toEqual(
      [],
    );
    // Before: said "the L1 fee is booked under an id of its own", with nothing booked.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "warn",
      message: expect.stringMatching(/the L1 fee needs no booking of its own/),
      fields: { send: send.key, bookedGwei: "21001", repeatedGwei: "21001", l1FeeBookedGwei: "0" },
    });
  });

  it("is still a conflict booked for less than the repeat, or for another send", async () => {
    const less = payout(`0x${"c".repeat(63)}3`, { amount: 26_001n, wei: wei + l1Fee });
    await bookedTheOldWay(less, { amount: 21_001n, wei });
    await expect(bookSendGas(deps(), "evm", 31337, less)).rejects.toThrow(/booked with other terms/);
    const other = payout(`0x${"c".repeat(63)}4`, { amount: 21_001n, wei });
    await bookedTheOldWay({ ...other, key: "att_another" }, { amount: 21_001n, wei });
    await expect(bookSendGas(deps(), "evm", 31337, other)).rejects.toThrow(/booked with other terms/);
  });
});

describe("a send's gas booked before, judged by what its evidence says", () => {
  const l1Fee = 5_000_000_000_003n;
  const send = (txHash: string, gas: { amount: bigint; detail: Record<string, string> }): MinedSendGas => ({
    key: `att_${txHash.slice(-6)}`,
    kind: "payout",
    txHash,
    hashes: [txHash],
    reverted: false,
    gas: { asset: assets.ETH, ...gas },
    owner: null,
  });

  it("is a conflict booked the old way for more than the repeat by anything but its L1 fee", async () => {
    const txHash = `0x${"d".repeat(63)}1`;
    // Booked before 9b9ea96 from an OP-stack receipt: 26,001 gwei, its L1 fee in it.
    await bookRailGas(deps(), {
      rail: "evm",
      gas: { asset: assets.ETH, amount: 26_001n, detail: {} },
      id: chainTransactionLedgerId(31337, txHash, "send-gas"),
      evidence: {
        rail: "evm",
        reference: txHash,
        detail: {
          kind: "send_gas",
          send: `att_${txHash.slice(-6)}`,
          sent: "payout",
          reverted: "false",
          gasUsed: "21000",
          effectiveGasPrice: "1000000007",
          l1Fee: l1Fee.toString(),
          wei: (wei + l1Fee).toString(),
        },
      },
      label: "the old way",
    });
    // A repeat for 1 gwei less than the booking's wei less its L1 fee: not this booking's gas, whatever is larger.
    // Before: any booking larger than the repeat stood.
    const other = send(txHash, { amount: 21_000n, detail: { wei: (wei - 1_000_000_000n).toString() } });
    await expect(bookSendGas(deps(), "evm", 31337, other)).rejects.toThrow(/booked with other terms/);
  });

  it("books the rest under an id of its own, once, booked from gas stored without the L1 fee and repeated from the receipt with it", async () => {
    const txHash = `0x${"d".repeat(63)}2`;
    const stored = send(txHash, { amount: 21_001n, detail: { wei: wei.toString() } });
    await bookSendGas(deps(), "evm", 31337, stored);
    const fromReceipt = send(txHash, {
      amount: 26_001n,
      detail: {
        gasUsed: "21000",
        effectiveGasPrice: "1000000007",
        l1Fee: l1Fee.toString(),
        wei: (wei + l1Fee).toString(),
      },
    });
    // Before: SettlementInvariantError ("booked with other terms") at every pass, the send never done.
    for (let pass = 0; pass < 2; pass++)
      await expect(bookSendGas(deps(), "evm", 31337, fromReceipt)).resolves.toEqual({
        booked: true,
        bookedBy: "send_gas",
      });
    const [whole] = await ledger.lookupTransfers([chainTransactionLedgerId(31337, txHash, "send-gas")]);
    const [rest] = await ledger.lookupTransfers([chainTransactionLedgerId(31337, txHash, "send-gas-l1")]);
    expect([whole?.amount, rest?.amount]).toEqual([21_001n, 5_000n]); // 26,001 gwei in all, the receipt's rounded up
    expect(rest?.evidence?.detail).toEqual({
      kind: "send_gas_l1",
      send: stored.key,
      l1Fee: l1Fee.toString(),
    });
    // Repeated again from the stored gas: the first booking's very wei, nothing more.
    await expect(bookSendGas(deps(), "evm", 31337, stored)).resolves.toEqual({
      booked: true,
      bookedBy: "send_gas",
    });
  });
});
