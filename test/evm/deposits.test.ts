// USDC paid in on the Hardhat chain under EVM_CONFIRMATIONS=3, both ways an invoice offers, through the HTTP API:
// a plain transfer to the invoice's deposit address (a CREATE2 forwarder, swept later in a batch whose gas is booked
// as the rail's fee) and an EIP-3009 authorization the payer signs and the gateway submits (checked first: a bad
// one is a stable 4xx and sends nothing). Credited only once final; a deposit a reorg takes away before that is
// never credited; under-, over-, repeated and late payments each end as the settlement documents.
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Abi,
  type Account,
  type Address,
  createPublicClient,
  encodeFunctionData,
  type Hex,
  HttpRequestError,
  http,
  keccak256,
  type Transport,
} from "viem";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { paidToAddressQuery } from "../../adapters/evm/authorizations.ts";
import {
  depositSaltOf,
  type EvmRail,
  forwarderFactoryAbi,
  receiveWithAuthorizationTypedData,
  testUsdAbi,
} from "../../adapters/evm/index.ts";
import { assets, type RailEvent, silentLogger } from "../../core/index.ts";
import { serverRaised } from "../../gateway/db/index.ts";
import { applyRailEvent, sweepDepositsOnce } from "../../gateway/settlement/index.ts";
import { latch } from "../support/latch.ts";
import { replaceTestUsdCode } from "../support/token-code.ts";
import { anotherProcessRail, type Gateway, gettingLogsOf, type LogsSeen, startGateway } from "./support.ts";

let gw: Gateway;
let rail: EvmRail;
const payerIndex = 5;
const strangerIndex = 6;

beforeAll(async () => {
  // No interval blocks: this file mines every block and drives every poll itself.
  gw = await startGateway({ EVM_CONFIRMATIONS: "3", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "0" });
  rail = gw.rail;
  await gw.watcher.stop();
  await rail.depositWatcher()!.stop();
  for (const index of [payerIndex, strangerIndex])
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [gw.chain.accounts[index]!.address, 1_000_000_000n],
    });
  await poll();
});
afterAll(async () => {
  await gw?.app.close();
});

const payer = () => gw.chain.accounts[payerIndex]!;
const stranger = () => gw.chain.accounts[strangerIndex]!;
const poll = () => rail.depositWatcher()!.catchUp(20);
const mine = (blocks: number) => gw.chain.networkHelpers.mine(blocks);

type InvoiceBody = {
  id: string;
  status: string;
  amount: string;
  received_amount: string | null;
  payer: string | null;
  instructions: Record<string, string>;
};

async function createInvoice(amount: string, extra: Record<string, unknown> = {}): Promise<InvoiceBody> {
  const created = await gw.call("POST", "/v1/invoices", {
    account: gw.app.demo!.merchant.id,
    asset: "USDC",
    amount,
    ...extra,
  });
  expect(created.status).toBe(201);
  return created.body as InvoiceBody;
}

async function invoice(id: string): Promise<InvoiceBody> {
  const read = await gw.call("GET", `/v1/invoices/${id}`);
  expect(read.status).toBe(200);
  return read.body as InvoiceBody;
}

async function transfer(from: Account, to: string, amount: bigint) {
  return gw.send(from, {
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "transfer",
    args: [to as Address, amount],
  });
}

async function merchantBalance(): Promise<bigint> {
  const account = await gw.ledgerAccount(gw.app.demo!.merchant.ledgerAccountId);
  return account.creditsPosted - account.debitsPosted;
}

/** The payer's signature over the invoice's authorization terms (overridable, to make bad ones). */
async function signAuthorization(
  inv: InvoiceBody,
  options: { signer?: Account; from?: Address; value?: bigint; validBefore?: bigint } = {},
) {
  const typed = JSON.parse(inv.instructions.authorization_typed_data!) as {
    domain: { name: string; version: string; chainId: number; verifyingContract: Address };
  };
  const from = options.from ?? payer().address;
  const message = {
    from,
    to: inv.instructions.authorization_to as Address,
    value: options.value ?? BigInt(inv.instructions.authorization_value!),
    validAfter: 0n,
    validBefore: options.validBefore ?? BigInt(inv.instructions.authorization_valid_before!),
    nonce: inv.instructions.authorization_nonce as Hex,
  };
  const signer = options.signer ?? payer();
  const signature = await signer.signTypedData!(receiveWithAuthorizationTypedData(typed.domain, message));
  return {
    from,
    value: message.value.toString(),
    valid_after: "0",
    valid_before: message.validBefore.toString(),
    nonce: message.nonce,
    signature,
  };
}

/** What a sweep pass needs of the gateway: its database, ledger and accounts. */
const sweepDeps = () => ({ db: gw.app.db, ledger: gw.app.ledger, accounts: gw.app.settlement.accounts });

/**
 * Every deposit earlier tests left brought to final and swept, pass after pass, until no forwarder is due and no sweep
 * is open. A sweep takes every forwarder due: a test that counts what its own sweep moves (and the gas booked for
 * it) starts from none.
 */
async function sweptUntilNothingDue(): Promise<void> {
  await mine(3);
  await poll();
  for (let pass = 0; pass < 5; pass++) {
    const [left] = await gw.app.db.query<{ due: number; open: number }>(
      `SELECT (SELECT count(*)::int FROM evm_deposits WHERE chain_id = $1 AND sweep_due_at <= now()) AS due,
              (SELECT count(*)::int FROM evm_sweeps WHERE chain_id = $1 AND done_at IS NULL) AS open`,
      [gw.chain.chain.id],
    );
    if (left!.due === 0 && left!.open === 0) return;
    await sweepDepositsOnce(sweepDeps(), rail, gw.chain.chain.id);
    await mine(3); // the sweep it sent final for the next pass
  }
  throw new Error("earlier deposits were still due for a sweep after 5 passes");
}

const hotWalletNonce = () =>
  gw.chain.publicClient.getTransactionCount({
    address: gw.chain.walletClient.account.address,
    blockTag: "pending",
  });

describe("a plain transfer to the invoice's deposit address", () => {
  it("is credited after 3 confirmations to the address the factory deploys, then swept with its gas booked", async () => {
    await sweptUntilNothingDue();
    const inv = await createInvoice("25.00");
    const address = inv.instructions.deposit_address as Address;
    expect(address).toMatch(/^0x[0-9a-fA-F]{40}$/);
    const predicted = await gw.chain.publicClient.readContract({
      address: gw.chain.contracts.forwarderFactory,
      abi: forwarderFactoryAbi,
      functionName: "forwarderAddress",
      args: [depositSaltOf(inv.id)],
    });
    expect(predicted).toBe(address);
    const before = await merchantBalance();

    const sent = await transfer(payer(), address, 25_000_000n);
    await poll(); // 1 confirmation: seen, nothing credited
    expect((await invoice(inv.id)).status).toBe("open");
    expect((await invoice(inv.id)).received_amount).toBeNull();
    await mine(1);
    await poll(); // 2
    expect((await invoice(inv.id)).status).toBe("open");
    await mine(1);
    await poll(); // 3: final
    const paid = await invoice(inv.id);
    expect(paid.status).toBe("paid");
    expect(paid.received_amount).toBe("25.000000");
    expect(paid.payer?.toLowerCase()).toBe(payer().address.toLowerCase());
    expect((await merchantBalance()) - before).toBe(25_000_000n);
    // The ledger's credit carries the transfer as evidence, with the payer (where a refund goes back to).
    const [credit] = await gw.app.db.query<{ payer: string; amount: bigint }>(
      "SELECT evidence->'detail'->>'payer' AS payer, amount FROM ledger_transfers WHERE evidence->>'reference' = $1",
      [`${sent.transactionHash}:${lostLogIndex(sent)}`],
    );
    expect(credit?.amount).toBe(25_000_000n);
    expect(credit?.payer.toLowerCase()).toBe(payer().address.toLowerCase());

    // The sweep: sent in one pass, final (and its gas booked) in a later one once it has the confirmations.
    const hot = gw.chain.walletClient.account.address;
    const hotBefore = await gw.tokenBalance(hot);
    const feeAccount = await gw.app.settlement.accounts.railAccount({
      kind: "fee",
      rail: "evm",
      asset: assets.ETH,
    });
    const feeBefore =
      feeAccount === null ? 0n : (await gw.ledgerAccount(feeAccount.ledgerAccountId)).debitsPosted;
    const deps = sweepDeps();
    const first = await sweepDepositsOnce(deps, rail, gw.chain.chain.id);
    expect(first.swept).toHaveLength(0);
    await mine(3);
    const second = await sweepDepositsOnce(deps, rail, gw.chain.chain.id);
    expect(second.swept).toHaveLength(1);
    expect(second.swept[0]!.amount).toBe(25_000_000n);
    expect(await gw.tokenBalance(address)).toBe(0n);
    expect((await gw.tokenBalance(hot)) - hotBefore).toBe(25_000_000n);
    expect(
      (await gw.chain.publicClient.getCode({ address }))?.length ?? 0,
      "the forwarder is deployed where it was predicted",
    ).toBeGreaterThan(2);
    const fees = await gw.app.settlement.accounts.railAccount({
      kind: "fee",
      rail: "evm",
      asset: assets.ETH,
    });
    const receipt = await gw.chain.publicClient.getTransactionReceipt({
      hash: second.swept[0]!.txHash as Hex,
    });
    const gwei = (receipt.gasUsed * receipt.effectiveGasPrice + 999_999_999n) / 1_000_000_000n;
    expect((await gw.ledgerAccount(fees!.ledgerAccountId)).debitsPosted - feeBefore).toBe(gwei);
    // Nothing left to sweep: a third pass sends nothing.
    const third = await sweepDepositsOnce(deps, rail, gw.chain.chain.id);
    expect(third.swept).toHaveLength(0);
  });
});

/** A transport to the chain whose every eth_getLogs is first shown to `seen` (support.ts gettingLogsOf). */
const gettingLogs = (seen: LogsSeen) => gettingLogsOf(gw, seen);

describe("a reorg deeper than the confirmations, of deposits whose crediting failed", () => {
  it("takes back the one credited before its answer was lost, takes nothing of the one never credited, and credits it once mined again", async () => {
    const [lost, refused] = [await createInvoice("1.40"), await createInvoice("1.50")];
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const paidTx = await transfer(payer(), lost.instructions.deposit_address!, 1_400_000n);
    const raw = await signedTransfer(refused.instructions.deposit_address!, 1_500_000n);
    await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    await mine(2);
    // The first credited and its answer lost (as a crash between the credit and the watcher's record of it would); the
    // second refused before anything is credited. Neither event moves to posted.
    let failing = true;
    const other = await followedFailing((event) => {
      if (!failing || event.kind !== "received") return false;
      if (event.reference === lost.id) return "after";
      return event.reference === refused.id;
    }, 3);
    try {
      const watcher = other.depositWatcher()!;
      // Enough polls for both to be tried, held (after 3 failures) and tried again.
      for (let round = 0; round < 6; round++) await watcher.poll().catch(() => undefined);
      expect([(await invoice(lost.id)).status, (await invoice(refused.id)).status]).toEqual(["paid", "open"]);
      expect((await merchantBalance()) - before).toBe(1_400_000n);
      const rows = await gw.app.db.query<{ status: string }>(
        "SELECT status FROM evm_watch_events WHERE tx_hash IN ($1, $2)",
        [paidTx.transactionHash, keccak256(raw)],
      );
      expect(rows).toHaveLength(2);
      for (const row of rows) expect(["pending", "held_pending"]).toContain(row.status);

      await snapshot.restore(); // a longer branch without either transfer
      await mine(6);
      failing = false;
      await watcher.poll();
      // Before: the credited deposit's event was not posted, so its removal counted as never final, and the invoice
      // stayed paid with nothing on chain. Now its credit is taken back; the one never credited loses nothing.
      expect([(await invoice(lost.id)).status, (await invoice(refused.id)).status]).toEqual([
        "reversed",
        "open",
      ]);
      expect(await merchantBalance()).toBe(before);
      expect(await outboxTypesOf(refused.id)).toEqual([]);
      expect(await gw.app.db.query("SELECT 1 FROM evm_watch_removals_held")).toEqual([]);

      // The second mined again: a receipt (no reversal of it to give back), credited once.
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await mine(3);
      await watcher.poll();
      const again = await invoice(refused.id);
      expect([again.status, again.received_amount]).toEqual(["paid", "1.500000"]);
      expect((await merchantBalance()) - before).toBe(1_500_000n);
      expect(await outboxTypesOf(refused.id)).toEqual(["invoice.payment_received", "invoice.paid"]);
    } finally {
      await other.stop();
    }
  });
});

describe("a deposit's credit still in flight when its watcher's lease runs out", () => {
  // A credits the deposit, its handler held (a slow node or database) past its lease; B takes the lease over, finds the
  // deposit reorganised away and applies its removal: the reversal finds no receipt yet and takes nothing. Then A's
  // credit is tried. `answered`: whether B's removal was done before A's credit, or answered only after A's call had
  // returned (B then forgets the removal it applied, unless A held it again meanwhile); `died`: A's process dies once
  // its call's credit is tried, before it reads the event again. `retryMs`: how often B tries its held events and
  // removals again (heldRetryMs); a removal held again is applied at B's next poll whatever it is.
  it.each([
    { answered: "before", retryMs: 0, when: "its removal answered before the credit" },
    { answered: "after", retryMs: 0, when: "its removal answered after the credit" },
    { answered: "before", retryMs: 3_600_000, when: "its removal answered before the credit" },
    { answered: "after", retryMs: 3_600_000, when: "its removal answered after the credit" },
    { answered: "died", retryMs: 0, when: "the crediting process dying before it read the event again" },
  ] as const)(
    "is not credited once the watcher that took over removed it ($when; held ones retried every $retryMs ms)",
    async ({ answered, retryMs }) => {
      const inv = await createInvoice("1.60");
      const before = await merchantBalance();
      const snapshot = await gw.chain.networkHelpers.takeSnapshot();
      const paid = await transfer(stranger(), inv.instructions.deposit_address!, 1_600_000n);
      await mine(2);
      const deps = { settlement: gw.app.settlement, payments: gw.app.payments, logger: silentLogger };
      const deposits = {
        factory: gw.chain.contracts.forwarderFactory,
        startBlock: 0n,
        pollIntervalMs: 3_600_000,
        lateWatchMs: 3_600_000,
        sweepSaltsMax: 50,
        heldRetryMs: 0,
      };
      const leaseMs = 300;
      const [creditReached, creditHeld, creditTried, died, reversalApplied, reversalHeld] = [
        latch(),
        latch(),
        latch(),
        latch(),
        latch(),
        latch(),
      ];
      if (answered !== "after") reversalHeld.release();
      let refusal: unknown = null;
      const slow = anotherProcessRail(gw, { confirmations: 3, deposits: { ...deposits, leaseMs } });
      slow.onEvent(async (event) => {
        if (event.kind !== "received" || event.reference !== inv.id)
          return applyRailEvent(deps, "evm", event);
        creditReached.release();
        await creditHeld.done;
        try {
          return await applyRailEvent(deps, "evm", event);
        } catch (error) {
          refusal = error;
          throw error;
        } finally {
          creditTried.release();
          if (answered === "died") await died.done; // its process gone: the call never returns to the watcher
        }
      });
      const other = anotherProcessRail(gw, {
        confirmations: 3,
        deposits: { ...deposits, heldRetryMs: retryMs },
      });
      let reversals = 0;
      other.onEvent(async (event) => {
        const verdict = await applyRailEvent(deps, "evm", event);
        if (event.kind === "reversed" && event.reference === inv.id && ++reversals === 1) {
          reversalApplied.release();
          await reversalHeld.done;
        }
        return verdict;
      });
      await rail.depositWatcher()!.stop();
      try {
        await slow.start(); // its first poll: the deposit final, its credit held
        await creditReached.done;
        await new Promise((resolve) => setTimeout(resolve, leaseMs + 200)); // past A's lease

        await snapshot.restore(); // a longer branch without the transfer
        await mine(6);
        await other.start(); // B's first poll: the reorg found, the deposit removed, no receipt to take back
        await reversalApplied.done;
        const watcher = other.depositWatcher()!;
        if (answered !== "after") await watcher.poll(); // after B's first poll, its removal forgotten
        expect((await gw.eventRow(paid.transactionHash, lostLogIndex(paid)))?.status).toBe("removed");
        expect((await invoice(inv.id)).status).toBe("open");

        creditHeld.release();
        await creditTried.done;
        if (answered !== "died") await slow.stop(); // A's call returned, its poll ended
        reversalHeld.release();
        await watcher.poll();
        // The credit's own transaction found its event removed, and wrote nothing. Before: A's credit was written after
        // B had found nothing to take back, and stood with nothing on chain until A read the event again and held its
        // removal again — for good when A died first.
        expect(serverRaised(refusal, "SYE01")).toBe(true);
        expect((await invoice(inv.id)).status).toBe("open");
        expect(await merchantBalance()).toBe(before);
        expect(await outboxTypesOf(inv.id)).toEqual([]);
        expect(await gw.app.db.query("SELECT 1 FROM evm_watch_removals_held")).toEqual([]);
      } finally {
        creditHeld.release();
        reversalHeld.release();
        died.release();
        await slow.stop();
        await other.stop();
      }
    },
  );
});

describe("a reversal's give-back still in flight when its watcher's lease runs out", () => {
  // A deposit credited, taken back by a reorg, mined again: A's `final` marks the reversal as the new mining's and gives
  // it back, its handler held past its lease; B takes the lease over, a second reorg removes the transfer again, and
  // B's removal finds no give-back yet to take back (and drops the mark). Then A's give-back is tried. `died`: A's
  // process dies once it is tried, before it reads the event again.
  it.each([
    { died: false, when: "its watcher reading the event again after the call" },
    { died: true, when: "the giving process dying before it read the event again" },
  ] as const)(
    "gives nothing back once the watcher that took over removed the transfer ($when)",
    async ({ died }) => {
      const inv = await createInvoice("1.70");
      const before = await merchantBalance();
      const raw = await signedTransfer(inv.instructions.deposit_address!, 1_700_000n);
      const first = await gw.chain.networkHelpers.takeSnapshot();
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await mine(2);
      await poll();
      expect((await invoice(inv.id)).status).toBe("paid");
      await first.restore(); // a longer branch without it
      await mine(6);
      await poll();
      expect((await invoice(inv.id)).status).toBe("reversed");
      const second = await gw.chain.networkHelpers.takeSnapshot();
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await mine(2);

      const deps = { settlement: gw.app.settlement, payments: gw.app.payments, logger: silentLogger };
      const deposits = {
        factory: gw.chain.contracts.forwarderFactory,
        startBlock: 0n,
        pollIntervalMs: 3_600_000,
        lateWatchMs: 3_600_000,
        sweepSaltsMax: 50,
        heldRetryMs: 0,
      };
      const leaseMs = 300;
      const [giveBackReached, giveBackHeld, giveBackTried, gone] = [latch(), latch(), latch(), latch()];
      let refusal: unknown = null;
      const slow = anotherProcessRail(gw, { confirmations: 3, deposits: { ...deposits, leaseMs } });
      slow.onEvent(async (event) => {
        if (event.kind !== "reinstated" || event.reference !== inv.id)
          return applyRailEvent(deps, "evm", event);
        giveBackReached.release();
        await giveBackHeld.done;
        try {
          return await applyRailEvent(deps, "evm", event);
        } catch (error) {
          refusal = error;
          throw error;
        } finally {
          giveBackTried.release();
          if (died) await gone.done; // its process gone: the call never returns to the watcher
        }
      });
      const other = anotherProcessRail(gw, { confirmations: 3, deposits });
      other.onEvent((event) => applyRailEvent(deps, "evm", event));
      await rail.depositWatcher()!.stop();
      try {
        await slow.start(); // its first poll: the transfer final again, its reversal marked and its give-back held
        await giveBackReached.done;
        await new Promise((resolve) => setTimeout(resolve, leaseMs + 200)); // past A's lease

        await second.restore(); // a longer branch without the transfer again
        await mine(6);
        await other.start(); // B's first poll: the reorg found, the transfer removed, no give-back to take back
        const watcher = other.depositWatcher()!;
        await watcher.poll();
        expect(
          await gw.app.db.query("SELECT status FROM evm_watch_events WHERE tx_hash = $1", [keccak256(raw)]),
        ).toEqual([{ status: "removed" }]);
        expect((await invoice(inv.id)).status).toBe("reversed");

        giveBackHeld.release();
        await giveBackTried.done;
        if (!died) await slow.stop(); // A's call returned, its poll ended
        await watcher.poll();
        // The give-back's own transaction found the event removed, and wrote nothing. Before: it was written after B had
        // found nothing to take back (and had dropped the mark), and the invoice stood paid with nothing on chain, A's
        // removal held again finding no mark to follow either.
        expect((await invoice(inv.id)).status).toBe("reversed");
        expect(await merchantBalance()).toBe(before);
        expect(await outboxTypesOf(inv.id)).toEqual([
          "invoice.payment_received",
          "invoice.paid",
          "invoice.reversed",
        ]);
        expect(serverRaised(refusal, "SYE01")).toBe(true);
        expect(await gw.app.db.query("SELECT 1 FROM evm_watch_removals_held")).toEqual([]);
      } finally {
        giveBackHeld.release();
        gone.release();
        await slow.stop();
        await other.stop();
      }
    },
  );
});

/**
 * Another process's rail following the deposits from `startBlock` through `transport` and crediting what it finds
 * (this file's watcher gives its lease up): started, driven by `drive` (caught up, unless given), then stopped.
 */
async function followedThrough(
  transport: Transport,
  deposits: { startBlock: bigint; filterWatchedMax: number },
  drive: (watcher: NonNullable<ReturnType<EvmRail["depositWatcher"]>>) => Promise<unknown> = (watcher) =>
    watcher.catchUp(20),
) {
  const other = anotherProcessRail(gw, {
    publicClient: createPublicClient({ chain: gw.chain.chain, transport, pollingInterval: 50 }),
    deposits: {
      factory: gw.chain.contracts.forwarderFactory,
      pollIntervalMs: 3_600_000,
      lateWatchMs: 3_600_000,
      sweepSaltsMax: 50,
      ...deposits,
    },
  });
  other.onEvent((event) =>
    applyRailEvent(
      { settlement: gw.app.settlement, payments: gw.app.payments, logger: silentLogger },
      "evm",
      event,
    ),
  );
  await rail.depositWatcher()!.stop();
  await other.start();
  try {
    await drive(other.depositWatcher()!);
  } finally {
    await other.stop();
  }
}

describe("many invoices watched", () => {
  it("reads each range whole and looks its recipients up, instead of asking the node about every watched address", async () => {
    const [first, second, signedFor] = [
      await createInvoice("1.10"),
      await createInvoice("1.20"),
      await createInvoice("1.30"),
    ];
    const watched = await gw.app.db.query("SELECT 1 FROM evm_deposits WHERE watch_until > now()");
    expect(watched.length).toBeGreaterThan(2);
    const before = await merchantBalance();
    const head = await gw.chain.publicClient.getBlockNumber();
    await transfer(payer(), first.instructions.deposit_address!, 1_100_000n);
    await transfer(payer(), second.instructions.deposit_address!, 1_200_000n);
    // Transfers to no invoice's address, in the same blocks: read, and not taken for deposits.
    await transfer(payer(), stranger().address, 7_000_000n);
    await transfer(stranger(), payer().address, 5_000_000n);
    const signed = await signAuthorization(signedFor);
    const fields = Object.fromEntries(Object.entries(signed).map(([name, value]) => [name, String(value)]));
    expect(await rail.submitSignedPayment!({ reference: signedFor.id, fields })).toMatchObject({
      status: "submitted",
    });
    await mine(3);
    // Another process follows the deposits from before those transfers, with at most 2 invoices to filter the node's
    // search by; every getLogs it makes is counted.
    const asked: unknown[][] = [];
    await followedThrough(
      gettingLogs((filter) => asked.push(filter.topics)),
      { startBlock: head + 1n, filterWatchedMax: 2 },
    );
    for (const inv of [first, second, signedFor]) expect((await invoice(inv.id)).status).toBe("paid");
    expect((await merchantBalance()) - before).toBe(3_600_000n);
    // One call for the transfers and one for the authorizations of the range, neither filtered by address or nonce
    // (before: one a kind for every 200 invoices watched, each filtered by them).
    expect(asked.length).toBe(2);
    for (const topics of asked) expect(topics.slice(1).every((topic) => topic === null)).toBe(true);
  });

  it.each([
    ["refuses", () => new Error("query exceeds max block range 2")],
    [
      "cannot answer in time",
      () => new HttpRequestError({ url: "http://node.invalid", status: 504, details: "Gateway Timeout" }),
    ],
  ])("splits a range the node %s in halves, down to a block", async (_how, refusal) => {
    const inv = await createInvoice("1.40");
    const head = await gw.chain.publicClient.getBlockNumber();
    await mine(2);
    await transfer(payer(), inv.instructions.deposit_address!, 1_400_000n);
    await mine(4);
    // A node that fails any getLogs of more than two blocks, as a provider caps a call's range or results, or its
    // gateway gives up on a slow one.
    const spans: bigint[] = [];
    const failing = gettingLogs((filter) => {
      const span = BigInt(filter.toBlock) - BigInt(filter.fromBlock) + 1n;
      spans.push(span);
      if (span > 2n) throw refusal();
    });
    await followedThrough(failing, { startBlock: head + 1n, filterWatchedMax: 0 });
    expect((await invoice(inv.id)).status).toBe("paid");
    expect(spans.some((span) => span > 2n)).toBe(true);
  });

  it("reads a block the node refuses to give whole by the watched invoices' addresses and nonces, and moves past it", async () => {
    const [byTransfer, signedFor] = [await createInvoice("1.60"), await createInvoice("1.70")];
    const head = await gw.chain.publicClient.getBlockNumber();
    await transfer(payer(), byTransfer.instructions.deposit_address!, 1_600_000n);
    const signed = await signAuthorization(signedFor);
    const fields = Object.fromEntries(Object.entries(signed).map(([name, value]) => [name, String(value)]));
    expect(await rail.submitSignedPayment!({ reference: signedFor.id, fields })).toMatchObject({
      status: "submitted",
    });
    await mine(3);
    // 250 more invoices watched, whose addresses and nonces come first in their order: the two paid are read on a
    // later page than the first.
    const token = gw.chain.contracts.testUsd.toLowerCase();
    await gw.app.db.query(
      `INSERT INTO evm_deposits (chain_id, token, reference, amount, deposit_address, salt, auth_nonce, client_secret,
                                 expires_at, watch_until)
       SELECT $1, $2, 'paged-' || i, 1, '0x' || lpad(to_hex(i), 40, '0'), 'paged', '0x' || lpad(to_hex(i), 64, '0'),
              'paged-secret-' || i, now() + interval '1 hour', now() + interval '1 hour'
       FROM generate_series(1, 250) AS i`,
      [gw.chain.chain.id, token],
    );
    // A node that refuses every read of the token's logs not filtered by recipient or nonce, even of one block (a
    // block holding more of the token's logs than a provider returns in one call).
    let filtered = 0;
    const refusing = gettingLogs((filter) => {
      if (filter.topics.slice(1).every((topic) => topic === null || topic === undefined))
        throw new Error("query returned more than 10000 results");
      filtered += 1;
    });
    try {
      // Before: the range was split down to one block, that block's refusal thrown, and every poll failed on it.
      await followedThrough(refusing, { startBlock: head + 1n, filterWatchedMax: 0 });
    } finally {
      await gw.app.db.query(
        "DELETE FROM evm_deposits WHERE chain_id = $1 AND token = $2 AND salt = 'paged'",
        [gw.chain.chain.id, token],
      );
    }
    expect((await invoice(byTransfer.id)).status).toBe("paid");
    expect((await invoice(signedFor.id)).status).toBe("paid");
    expect(filtered).toBeGreaterThan(0);
  });

  it("does not read a block by the watched invoices when the node only timed out on it: the poll fails, to be tried again", async () => {
    await createInvoice("1.80"); // one invoice watched, past filterWatchedMax 0: the range is read whole
    const head = await gw.chain.publicClient.getBlockNumber();
    await mine(2);
    let filtered = 0;
    const slow = gettingLogs((filter) => {
      if (filter.topics.slice(1).some((topic) => topic !== null && topic !== undefined)) filtered += 1;
      else
        throw new HttpRequestError({ url: "http://node.invalid", status: 504, details: "Gateway Timeout" });
    });
    await followedThrough(slow, { startBlock: head + 1n, filterWatchedMax: 0 }, async (watcher) => {
      await expect(watcher.poll()).rejects.toThrow();
    });
    expect(filtered).toBe(0);
  });

  it("does not split a range when the node is out of reach or rate-limits over HTTP: a poll fails after one call", async () => {
    await createInvoice("1.50"); // one invoice watched, past filterWatchedMax 0: the range is read whole
    const head = await gw.chain.publicClient.getBlockNumber();
    await mine(4);
    let calls = 0;
    const limited = gettingLogs(() => {
      calls += 1;
      throw new HttpRequestError({ url: "http://node.invalid", status: 429, details: "Too Many Requests" });
    });
    await followedThrough(limited, { startBlock: head + 1n, filterWatchedMax: 0 }, async (watcher) => {
      // Its first poll, at start; then one more: one call each (before, each halved the range down to a block).
      await expect.poll(() => calls).toBe(1);
      await expect(watcher.poll()).rejects.toThrow();
    });
    expect(calls).toBe(2);
  });
});

describe("the deposit watcher's start block, read from the head", () => {
  it("is the first start's: a restart before any poll kept a cursor reads from it, not from the later head", async () => {
    const key = [gw.chain.chain.id, gw.chain.contracts.testUsd.toLowerCase()];
    const [kept] = await gw.app.db.query<{ next_block: bigint }>(
      "SELECT next_block FROM evm_watch_cursors WHERE chain_id = $1 AND contract = $2",
      key,
    );
    expect(kept).toBeDefined();
    await gw.app.db.query("DELETE FROM evm_watch_cursors WHERE chain_id = $1 AND contract = $2", key);
    onTestFinished(async () => {
      await gw.app.db.query(
        `INSERT INTO evm_watch_cursors (chain_id, contract, next_block) VALUES ($1, $2, $3)
         ON CONFLICT (chain_id, contract) DO UPDATE SET next_block = EXCLUDED.next_block`,
        [...key, kept!.next_block],
      );
    });
    // A node refusing every getLogs: no poll gets as far as keeping a cursor.
    const refusing = gettingLogs(() => {
      throw new Error("query exceeds max block range 0");
    });
    /** Another process's rail started with no start block (from the head), stopped: the cursor it leaves. */
    const startedAndStopped = async () => {
      const other = anotherProcessRail(gw, {
        publicClient: createPublicClient({ chain: gw.chain.chain, transport: refusing, pollingInterval: 50 }),
        deposits: {
          factory: gw.chain.contracts.forwarderFactory,
          pollIntervalMs: 3_600_000,
          lateWatchMs: 3_600_000,
          sweepSaltsMax: 50,
        },
      });
      await other.start();
      try {
        return await other.depositWatcher()!.nextBlock();
      } finally {
        await other.stop();
      }
    };
    const headBefore = await gw.chain.publicClient.getBlockNumber();
    const first = await startedAndStopped();
    expect(first).toBeGreaterThanOrEqual(headBefore);
    await mine(5);
    // An invoice paid in the blocks between the two starts is read by the second: it starts where the first did.
    expect(await startedAndStopped()).toBe(first);
  });
});

describe("a deposit whose crediting keeps failing", () => {
  it("is held so that the deposits behind it are credited, and credited itself once it can be", async () => {
    const [poisoned, behind] = [await createInvoice("1.00"), await createInvoice("2.00")];
    await transfer(payer(), poisoned.instructions.deposit_address!, 1_000_000n);
    await transfer(payer(), behind.instructions.deposit_address!, 2_000_000n);
    await mine(3);
    // A handler that cannot apply the first deposit (as an invariant broken would).
    let failing = true;
    const other = await followedFailing(
      (event) => failing && event.kind === "received" && event.reference === poisoned.id,
    );
    try {
      const watcher = other.depositWatcher()!;
      for (let round = 0; round < 6 && (await invoice(behind.id)).status !== "paid"; round++)
        await watcher.poll().catch(() => undefined);
      // Before: every poll failed at the first deposit, and the one behind it was never credited.
      expect((await invoice(behind.id)).status).toBe("paid");
      expect((await invoice(poisoned.id)).status).toBe("open");
      failing = false;
      await watcher.poll();
      expect((await invoice(poisoned.id)).status).toBe("paid");
    } finally {
      await other.stop();
    }
  });
});

describe("two processes' sweep passes at once", () => {
  it("start one sweep of the forwarders due, not one each", async () => {
    // No sweep left open by an earlier test, which both passes would follow instead of starting one.
    await sweptUntilNothingDue();
    const inv = await createInvoice("4.00");
    await transfer(payer(), inv.instructions.deposit_address!, 4_000_000n);
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    const other = anotherProcessRail(gw, {
      deposits: {
        factory: gw.chain.contracts.forwarderFactory,
        startBlock: 0n,
        pollIntervalMs: 250,
        lateWatchMs: 3_600_000,
        sweepSaltsMax: 50,
      },
    });
    // The sweeps of this invoice's forwarder (by its salt): the gateway's own sweep pass, every minute, may start
    // one of other forwarders meanwhile; of this one, whoever starts it, there must be one.
    const [deposit] = await gw.app.db.query<{ salt: string }>(
      "SELECT salt FROM evm_deposits WHERE reference = $1",
      [inv.id],
    );
    const sweepsOfForwarder = () =>
      gw.app.db.query("SELECT key FROM evm_sweeps WHERE salts @> $1::jsonb", [
        JSON.stringify([deposit!.salt]),
      ]);
    expect(await sweepsOfForwarder()).toHaveLength(0);
    const deps = sweepDeps();
    await Promise.all([
      sweepDepositsOnce(deps, rail, gw.chain.chain.id),
      sweepDepositsOnce(deps, other, gw.chain.chain.id),
    ]);
    // Before: each pass found no open sweep and started its own of the same forwarder (two sends, one wasted).
    expect(await sweepsOfForwarder()).toHaveLength(1);
    await mine(3);
    await sweepDepositsOnce(deps, rail, gw.chain.chain.id);
    // Swept once, done: the forwarder emptied, one sweep transaction of its salt.
    expect(await gw.tokenBalance(inv.instructions.deposit_address as Address)).toBe(0n);
    const open = await gw.app.db.query("SELECT key FROM evm_sweeps WHERE done_at IS NULL");
    expect(open).toHaveLength(0);
  });
});

describe("a forwarder the token will not move out of (a blacklisted address)", () => {
  it("is left out of sweeps for a while, and the other forwarders are swept", async () => {
    await sweptUntilNothingDue();
    const { abi, restore } = await replaceTestUsdCode(gw.chain, "BlacklistingTestUSD");
    const blocked = await createInvoice("1.00");
    const other = await createInvoice("2.00");
    await transfer(payer(), blocked.instructions.deposit_address!, 1_000_000n);
    await transfer(payer(), other.instructions.deposit_address!, 2_000_000n);
    await mine(2);
    await poll();
    expect((await invoice(other.id)).status).toBe("paid");
    const [deposit] = await gw.app.db.query<{ salt: string }>(
      "SELECT salt FROM evm_deposits WHERE reference = $1",
      [blocked.id],
    );
    onTestFinished(async () => {
      await restore();
      // Due again, now that the token moves it: later tests' sweeps take it.
      await gw.app.db.query("UPDATE evm_deposits SET sweep_due_at = now() WHERE salt = $1", [deposit!.salt]);
    });
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi,
      functionName: "blacklist",
      args: [blocked.instructions.deposit_address as Address],
    });
    const hot = gw.chain.walletClient.account.address;
    const hotBefore = await gw.tokenBalance(hot);
    for (let pass = 0; pass < 3; pass++) {
      await sweepDepositsOnce(sweepDeps(), rail, gw.chain.chain.id);
      await mine(3);
    }
    // Before: the sweep of both reverted in its gas estimate every pass, and stayed open: nothing was ever swept.
    expect(await gw.tokenBalance(other.instructions.deposit_address as Address)).toBe(0n);
    expect((await gw.tokenBalance(hot)) - hotBefore).toBe(2_000_000n);
    expect(await gw.tokenBalance(blocked.instructions.deposit_address as Address)).toBe(1_000_000n);
    const [left] = await gw.app.db.query<{ later: boolean }>(
      "SELECT sweep_due_at > now() + interval '23 hours' AS later FROM evm_deposits WHERE salt = $1",
      [deposit!.salt],
    );
    expect(left?.later).toBe(true);
    expect(await gw.app.db.query("SELECT key FROM evm_sweeps WHERE done_at IS NULL")).toHaveLength(0);
  });
});

describe("the look for transfers already paid to a deposit address", () => {
  it("is answered from an index of the address, not by reading every event of the token", async () => {
    // Reached by the anonymous /pay route before an authorization is submitted; the events table only grows.
    const plan = await gw.app.db.transaction(async (tx) => {
      await tx.query("SET LOCAL enable_seqscan = off");
      const rows = await tx.query<{ "QUERY PLAN": string }>(`EXPLAIN ${paidToAddressQuery}`, [
        gw.chain.chain.id,
        gw.chain.contracts.testUsd.toLowerCase(),
        payer().address.toLowerCase(),
      ]);
      return rows.map((row) => row["QUERY PLAN"]).join("\n");
    });
    // Before: no index could answer it (a sequential scan, however costly, was the only plan).
    expect(plan).toMatch(/evm_watch_events_transfer_to/);
  });
});

describe("an EIP-3009 authorization", () => {
  it("is refused with a stable 4xx and nothing sent when the signature, amount or validity is wrong", async () => {
    const inv = await createInvoice("10.00");
    const nonceBefore = await hotWalletNonce();
    const url = `/v1/invoices/${inv.id}/authorizations`;
    const wrongAmount = await gw.call("POST", url, await signAuthorization(inv, { value: 9_000_000n }));
    expect(wrongAmount.status).toBe(400);
    expect(wrongAmount.body.error.code).toBe("authorization_mismatch");
    const notThePayer = await gw.call("POST", url, await signAuthorization(inv, { signer: stranger() }));
    expect(notThePayer.status).toBe(400);
    expect(notThePayer.body.error.code).toBe("signature_invalid");
    const tooLate = BigInt(Math.floor(Date.now() / 1000) - 10);
    const expired = await gw.call("POST", url, await signAuthorization(inv, { validBefore: tooLate }));
    expect(expired.status).toBe(400);
    expect(expired.body.error.code).toBe("authorization_expired");
    // 65 bytes that are no signature: recovery threw on the v (5), or on an r of 0, and answered 500.
    for (const signature of [`0x${"11".repeat(64)}05`, `0x${"00".repeat(32)}${"11".repeat(32)}1b`]) {
      const noSignature = await gw.call("POST", url, { ...(await signAuthorization(inv)), signature });
      expect([noSignature.status, noSignature.body.error?.code], signature).toEqual([
        400,
        "signature_invalid",
      ]);
    }
    const malformed = await gw.call("POST", url, { ...(await signAuthorization(inv)), signature: "0x12" });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("parameter_invalid");
    const broke = gw.chain.accounts[8]!; // holds no TestUSD
    const poor = await gw.call(
      "POST",
      url,
      await signAuthorization(inv, { signer: broke, from: broke.address }),
    );
    expect(poor.status).toBe(402);
    expect(poor.body.error.code).toBe("payer_insufficient_funds");
    expect(await hotWalletNonce()).toBe(nonceBefore);
    expect((await invoice(inv.id)).status).toBe("open");
  });

  it("is refused rail_unreachable, nothing sent, while the chain's node is out of reach; sent again later, submitted", async () => {
    // Another process whose node does not answer (nothing listens on port 9). Before, its first read threw: the API
    // answered 500 internal_error, logged as a failure of the gateway's own.
    const inv = await createInvoice("2.00");
    const signed = await signAuthorization(inv);
    const fields = Object.fromEntries(Object.entries(signed).map(([name, value]) => [name, String(value)]));
    const cutOff = anotherProcessRail(gw, {
      publicClient: createPublicClient({
        chain: gw.chain.chain,
        transport: http("http://127.0.0.1:9", { retryCount: 0, timeout: 2_000 }),
      }),
      deposits: { startBlock: 0n, pollIntervalMs: 250, lateWatchMs: 3_600_000, sweepSaltsMax: 50 },
    });
    expect(await cutOff.submitSignedPayment!({ reference: inv.id, fields })).toMatchObject({
      status: "refused",
      code: "rail_unreachable",
    });
    // A wallet posting to that process's own route (no API key) hears 503 with Retry-After.
    const [route] = cutOff.routes!;
    const answer = await route!.handle({
      headers: { "content-type": "application/json" },
      rawBody: Buffer.from(JSON.stringify({ ...fields, client_secret: inv.instructions.client_secret })),
    });
    expect(answer).toMatchObject({
      status: 503,
      headers: { "retry-after": "5" },
      body: { error: { code: "rail_unreachable" } },
    });
    // Nothing was sent: no send of this authorization, and the same authorization is taken (its nonce unused).
    const [sends] = await gw.app.db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM evm_deposits WHERE reference = $1 AND auth_tx_hash IS NOT NULL",
      [inv.id],
    );
    expect(sends!.n).toBe("0");
    const submitted = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    // Credited before the test ends: the other tests measure the merchant's balance.
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: submitted.body.transaction });
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
  });

  it("is submitted by the gateway, credited once final, and a second submission is refused", async () => {
    const inv = await createInvoice("10.00");
    const before = await merchantBalance();
    const payerBefore = await gw.tokenBalance(payer().address);
    const signed = await signAuthorization(inv);
    const submitted = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({
      object: "invoice_authorization",
      invoice: inv.id,
      status: "submitted",
    });
    const receipt = await gw.chain.publicClient.waitForTransactionReceipt({
      hash: submitted.body.transaction,
    });
    expect(receipt.status).toBe("success");
    expect(payerBefore - (await gw.tokenBalance(payer().address))).toBe(10_000_000n);

    await poll();
    expect((await invoice(inv.id)).status).toBe("open"); // 1 confirmation
    const again = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("authorization_used");

    await mine(2);
    await poll();
    const paid = await invoice(inv.id);
    expect(paid.status).toBe("paid");
    expect(paid.received_amount).toBe("10.000000");
    expect(paid.payer?.toLowerCase()).toBe(payer().address.toLowerCase());
    expect((await merchantBalance()) - before).toBe(10_000_000n);
    const afterPaid = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect(afterPaid.status).toBe(409);
    expect(afterPaid.body.error.code).toBe("invoice_not_payable");
  });

  it("submitted to two processes at once, the one refused for the other's send leaves the invoice bound, and it is credited", async () => {
    const inv = await createInvoice("3.00");
    const before = await merchantBalance();
    const signed = await signAuthorization(inv);
    const fields = Object.fromEntries(Object.entries(signed).map(([name, value]) => [name, String(value)]));
    // Two processes' rails, each on its own view of the database, paused where the race needs them:
    // - B has read the invoice unbound and bound it, and looked for a send under the key (none yet): paused there;
    // - A binds too, sends (mined at once), and is paused before it records its transaction;
    // - B, let go, estimates its own send: reverted (the authorization is used), a refusal: B gives the binding back.
    let aSent!: () => void;
    let bDone!: () => void;
    const aHasSent = new Promise<void>((resolve) => {
      aSent = resolve;
    });
    const bHasDone = new Promise<void>((resolve) => {
      bDone = resolve;
    });
    const paused = (
      pause: (text: string, params: readonly unknown[] | undefined) => Promise<void> | null,
      after: boolean,
    ): typeof gw.app.db =>
      new Proxy(gw.app.db, {
        get(target, name) {
          if (name === "query")
            return async (text: string, params?: readonly unknown[]) => {
              const waiting = pause(text, params);
              if (waiting === null || !after) {
                await waiting;
                return target.query(text, params);
              }
              const result = await target.query(text, params);
              await waiting;
              return result;
            };
          const value = Reflect.get(target, name, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    let bLooked = false;
    const bDb = paused((text, params) => {
      // The journal's look for a send stored under the key (not the look for the key's chain part before it).
      if (bLooked || !/signed_at[\s\S]*FROM evm_sends WHERE attempt_id = \$1/.test(text)) return null;
      if (!String(params?.[0]).startsWith("receive-auth:")) return null;
      bLooked = true;
      return aHasSent;
    }, true);
    const aDb = paused((text) => {
      if (!/SET auth_tx_hash/.test(text)) return null;
      aSent();
      return bHasDone;
    }, false);
    const deposits = { startBlock: 0n, pollIntervalMs: 250, lateWatchMs: 3_600_000, sweepSaltsMax: 50 };
    const [a, b] = [
      anotherProcessRail(gw, { db: aDb, deposits }),
      anotherProcessRail(gw, { db: bDb, deposits }),
    ];
    const bSubmits = b.submitSignedPayment!({ reference: inv.id, fields });
    await expect.poll(() => bLooked).toBe(true);
    const aSubmits = a.submitSignedPayment!({ reference: inv.id, fields });
    const bOutcome = await bSubmits;
    bDone();
    const aOutcome = await aSubmits;
    expect(aOutcome).toMatchObject({ status: "submitted" });
    expect(bOutcome).toMatchObject({ status: "refused" });
    // Before: B's give-back unbound the invoice after A's send; the deposit watcher, which follows the payer's
    // nonce the invoice is bound to, never credited it.
    const [row] = await gw.app.db.query<{ auth_from: string | null }>(
      "SELECT auth_from FROM evm_deposits WHERE reference = $1",
      [inv.id],
    );
    expect(row?.auth_from).toBe(payer().address.toLowerCase());
    await mine(3);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    expect((await merchantBalance()) - before).toBe(3_000_000n);
  });

  it("a wallet submits it without an API key, with the invoice's client secret", async () => {
    const inv = await createInvoice("3.50");
    const url = inv.instructions.authorization_url!;
    expect(url).toBe("/pay/evm/authorizations");
    const post = (body: unknown) =>
      gw.app.server.inject({
        method: "POST",
        url,
        headers: { "content-type": "application/json" },
        payload: JSON.stringify(body),
      });
    const signed = await signAuthorization(inv);
    const unknown = await post({ ...signed, client_secret: "pay_secret_nope" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe("invoice_not_found");
    // A NUL reached PostgreSQL's text parameter, which refuses it: a 500 to anyone, logged as an error each time.
    for (const client_secret of ["a\u0000", `pay_secret_${"0".repeat(48)}`]) {
      const none = await post({ ...signed, client_secret });
      expect([none.statusCode, none.json().error?.code], client_secret).toEqual([404, "invoice_not_found"]);
    }
    const forged = await post({
      ...(await signAuthorization(inv, { signer: stranger() })),
      client_secret: inv.instructions.client_secret,
    });
    expect(forged.statusCode).toBe(400);
    expect(forged.json().error.code).toBe("signature_invalid");
    const accepted = await post({ ...signed, client_secret: inv.instructions.client_secret });
    expect(accepted.statusCode).toBe(202);
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: accepted.json().transaction });
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
  });
});

describe("an EIP-3009 authorization on a token that refuses with USDC's reason strings", () => {
  let restore: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    ({ restore } = await replaceTestUsdCode(gw.chain, "FiatTokenReasonsTestUSD"));
  });
  afterAll(async () => {
    await restore?.();
  });

  it("is refused as the reason says: a payer short of funds is 402 payer_insufficient_funds, nothing sent", async () => {
    const inv = await createInvoice("10.00");
    const nonceBefore = await hotWalletNonce();
    const broke = gw.chain.accounts[8]!; // holds no TestUSD
    const poor = await gw.call(
      "POST",
      `/v1/invoices/${inv.id}/authorizations`,
      await signAuthorization(inv, { signer: broke, from: broke.address }),
    );
    // Before: "ERC20: transfer amount exceeds balance" was a reason the rail did not read: rail_unavailable.
    expect([poor.status, poor.body.error?.code]).toEqual([402, "payer_insufficient_funds"]);
    expect(await hotWalletNonce()).toBe(nonceBefore);
    expect((await invoice(inv.id)).status).toBe("open");
  });
});
describe("reorgs", () => {
  it("a deposit reorged out before its 3rd confirmation is never credited; the new branch's is", async () => {
    const inv = await createInvoice("7.00");
    const address = inv.instructions.deposit_address!;
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const lost = await transfer(payer(), address, 7_000_000n);
    await poll();
    await mine(1);
    await poll(); // 2 confirmations: seen, not final
    expect((await gw.eventRow(lost.transactionHash, lostLogIndex(lost)))?.status).toBe("pending");

    await snapshot.restore(); // another branch, without the transfer
    await mine(3);
    const result = await poll();
    expect(result.removed).toBeGreaterThanOrEqual(1);
    expect((await gw.eventRow(lost.transactionHash, lostLogIndex(lost)))?.status).toBe("removed");
    await mine(3);
    await poll();
    const open = await invoice(inv.id);
    expect(open.status).toBe("open");
    expect(open.received_amount).toBeNull();
    expect(await merchantBalance()).toBe(before);

    // Paid on the branch that stays: credited once, once final.
    await transfer(payer(), address, 7_000_000n);
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    expect((await merchantBalance()) - before).toBe(7_000_000n);
  });
});

describe("a reorg deeper than the confirmations", () => {
  it("takes back a credited deposit: the invoice reversed, the account debited", async () => {
    const inv = await createInvoice("3.00");
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    await transfer(stranger(), inv.instructions.deposit_address!, 3_000_000n);
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    expect((await merchantBalance()) - before).toBe(3_000_000n);

    await snapshot.restore(); // a branch without it, longer than the one that had it
    await mine(6);
    await poll();
    expect((await invoice(inv.id)).status).toBe("reversed");
    expect(await merchantBalance()).toBe(before);
  });

  it("takes it back also after polls past its finality (its block no longer the watcher's anchor)", async () => {
    const inv = await createInvoice("2.50");
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    await transfer(stranger(), inv.instructions.deposit_address!, 2_500_000n);
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    // The watcher goes on, a block a poll: the deposit's block falls below the final blocks it keeps.
    for (let i = 0; i < 4; i++) {
      await mine(1);
      await poll();
    }
    await snapshot.restore(); // a branch without it, longer than the one that had it
    await mine(12);
    await poll();
    // Before: only the newest final block was kept; the reorg was found above the deposit's block, which was left
    // credited with nothing on chain.
    expect((await invoice(inv.id)).status).toBe("reversed");
    expect(await merchantBalance()).toBe(before);
  });

  it("gives the reversal back when the same transfer is mined again: paid, what it received unchanged", async () => {
    const inv = await createInvoice("3.00");
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const raw = await signedTransfer(inv.instructions.deposit_address!, 3_000_000n);
    await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");

    await snapshot.restore();
    await mine(6);
    await poll();
    expect((await invoice(inv.id)).status).toBe("reversed");
    expect(await merchantBalance()).toBe(before);

    // Mined again behind another transfer in its block: its log has another place there.
    const automine = (on: boolean) =>
      gw.chain.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });
    await automine(false);
    try {
      await gw.chain.walletClient.writeContract({
        account: payer(),
        chain: gw.chain.chain,
        address: gw.chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "transfer",
        args: [stranger().address, 1n],
        // A higher tip than the transfer's: mined first in the block.
        maxFeePerGas: 300_000_000_000n,
        maxPriorityFeePerGas: 50_000_000_000n,
      });
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await mine(1);
    } finally {
      await automine(true);
    }
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: keccak256(raw) });
    expect(receipt.logs[0]!.logIndex).toBeGreaterThan(0);
    await mine(2);
    await poll();
    // Before: credited as a second payment (received 6.00) of an invoice left reversed for good.
    const again = await invoice(inv.id);
    expect([again.status, again.received_amount]).toEqual(["paid", "3.000000"]);
    expect((await merchantBalance()) - before).toBe(3_000_000n);
    expect(await outboxTypesOf(inv.id)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.reinstated",
      "invoice.paid",
    ]);
  });

  it("leaves a reversed invoice due again: the payer's authorization is taken and pays it again", async () => {
    const inv = await createInvoice("3.00");
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    await transfer(stranger(), inv.instructions.deposit_address!, 3_000_000n);
    await mine(2);
    await poll();
    expect((await invoice(inv.id)).status).toBe("paid");
    const signed = await signAuthorization(inv);
    const paid = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect([paid.status, paid.body.error?.code]).toEqual([409, "invoice_not_payable"]);

    await snapshot.restore(); // a branch without the transfer, longer than the one that had it
    await mine(6);
    await poll();
    expect((await invoice(inv.id)).status).toBe("reversed");
    // Before: 409 invoice_not_payable, though a transfer to its address paid it again.
    const submitted = await gw.call("POST", `/v1/invoices/${inv.id}/authorizations`, signed);
    expect(submitted.status).toBe(202);
    const receipt = await gw.chain.publicClient.waitForTransactionReceipt({
      hash: submitted.body.transaction,
    });
    expect(receipt.status).toBe("success");
    await mine(2);
    await poll();
    // received_amount is all its receipts brought, the one the reorg took back included.
    const again = await invoice(inv.id);
    expect([again.status, again.received_amount]).toEqual(["paid", "6.000000"]);
    expect((await merchantBalance()) - before).toBe(3_000_000n);
    expect(await outboxTypesOf(inv.id)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.payment_received",
      "invoice.paid",
    ]);
  });

  it("takes back both of two equal transfers one transaction made to an invoice's address", async () => {
    const inv = await createInvoice("2.00");
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    // One transaction, two Transfer logs of 1.00 each to the address: a multicall of two transferFrom.
    const artifact = JSON.parse(
      await readFile(
        path.join(
          import.meta.dirname,
          "../../artifacts/contracts/test/Multicall3TryAggregate.sol/Multicall3TryAggregate.json",
        ),
        "utf8",
      ),
    ) as { abi: Abi; bytecode: Hex };
    const deployed = await gw.chain.publicClient.waitForTransactionReceipt({
      hash: await gw.chain.walletClient.deployContract({
        ...artifact,
        account: gw.chain.walletClient.account,
      }),
    });
    const multicall = deployed.contractAddress!;
    await gw.send(payer(), {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "approve",
      args: [multicall, 2_000_000n],
    });
    const pull = encodeFunctionData({
      abi: testUsdAbi,
      functionName: "transferFrom",
      args: [payer().address, inv.instructions.deposit_address! as Address, 1_000_000n],
    });
    const both = await gw.send(payer(), {
      address: multicall,
      abi: artifact.abi,
      functionName: "tryAggregate",
      args: [
        true,
        [
          { target: gw.chain.contracts.testUsd, callData: pull },
          { target: gw.chain.contracts.testUsd, callData: pull },
        ],
      ],
    });
    expect(
      both.logs.filter((log) => log.address.toLowerCase() === gw.chain.contracts.testUsd.toLowerCase()),
    ).toHaveLength(2);
    await mine(2);
    await poll();
    expect([(await invoice(inv.id)).status, (await merchantBalance()) - before]).toEqual([
      "paid",
      2_000_000n,
    ]);

    await snapshot.restore(); // a longer branch without it
    await mine(6);
    await poll();
    // Before: the second removal took the first one's reorg record for a reversal it had given back, took nothing,
    // and 1.00 stayed credited with nothing on chain.
    expect([(await invoice(inv.id)).status, await merchantBalance()]).toEqual(["reversed", before]);
  });

  it("takes back what was given back when a second reorg removes the transfer mined again; mined a third time, paid once", async () => {
    const inv = await createInvoice("2.50");
    const before = await merchantBalance();
    const raw = await signedTransfer(inv.instructions.deposit_address!, 2_500_000n);
    const minedFinal = async () => {
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await mine(2);
      await poll();
    };
    const reorged = async (snapshot: { restore(): Promise<void> }) => {
      await snapshot.restore(); // a longer branch without it
      await mine(6);
      await poll();
    };
    const state = async () => {
      const read = await invoice(inv.id);
      return [read.status, read.received_amount, (await merchantBalance()) - before];
    };
    const first = await gw.chain.networkHelpers.takeSnapshot();
    await minedFinal();
    await reorged(first);
    expect(await state()).toEqual(["reversed", "2.500000", 0n]);
    const second = await gw.chain.networkHelpers.takeSnapshot();
    await minedFinal(); // the reversal given back
    expect(await state()).toEqual(["paid", "2.500000", 2_500_000n]);

    await reorged(second);
    // Before: the removal asked for a receipt of this mining, which was never booked (the reversal was given back
    // instead), so nothing was taken and the invoice stayed paid with nothing on chain.
    expect(await state()).toEqual(["reversed", "2.500000", 0n]);
    await minedFinal();
    expect(await state()).toEqual(["paid", "2.500000", 2_500_000n]);
    expect(await outboxTypesOf(inv.id)).toEqual([
      "invoice.payment_received",
      "invoice.paid",
      "invoice.reversed",
      "invoice.reinstated",
      "invoice.paid",
      "invoice.reversed",
      "invoice.reinstated",
      "invoice.paid",
    ]);
  });

  it("holds a reversal that keeps failing and goes on past the reorg; mined again, the deposit waits for it", async () => {
    const [held, reorged, after] = [
      await createInvoice("1.10"),
      await createInvoice("1.20"),
      await createInvoice("1.30"),
    ];
    const before = await merchantBalance();
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const raw = await signedTransfer(held.instructions.deposit_address!, 1_100_000n);
    await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
    await transfer(payer(), reorged.instructions.deposit_address!, 1_200_000n);
    await mine(2);
    // A handler that cannot reverse the first two deposits (as an invariant broken would); the gateway's
    // confirmations, so that the blocks the other rail remembers reach back to both deposits.
    let failing = true;
    const other = await followedFailing(
      (event) => failing && event.kind === "reversed" && [held.id, reorged.id].includes(event.reference),
      3,
    );
    const statuses = async () => [
      (await invoice(held.id)).status,
      (await invoice(reorged.id)).status,
      (await invoice(after.id)).status,
    ];
    try {
      const watcher = other.depositWatcher()!;
      const polls = async (rounds: number) => {
        for (let round = 0; round < rounds; round++) await watcher.poll().catch(() => undefined);
      };
      await polls(2);
      expect(await statuses()).toEqual(["paid", "paid", "open"]);

      await snapshot.restore(); // a longer branch without either transfer, then the first mined again, and another
      await mine(6);
      await gw.chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
      await transfer(payer(), after.instructions.deposit_address!, 1_300_000n);
      await mine(3);
      // The first poll past the reorg holds both reversals and goes on. Before: it failed on the first reversal.
      await watcher.poll();
      await polls(7);
      // Before: every poll failed on the first reversal tried, and the third deposit was never credited (and with
      // one of two held, the other's failures counted again from nothing). Now: both reversals are held, the watcher
      // goes on, and the first deposit, mined again, waits for its own (credited once: its first credit stands until
      // it is reversed).
      expect(await statuses()).toEqual(["paid", "paid", "paid"]);
      expect((await merchantBalance()) - before).toBe(3_600_000n);
      const [heldRows] = await gw.app.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM evm_watch_removals_held",
      );
      expect(heldRows?.n).toBe(2);
      const revived = await gw.app.db.query<{ status: string }>(
        "SELECT status FROM evm_watch_events WHERE tx_hash = $1",
        [keccak256(raw)],
      );
      expect(revived).toEqual([{ status: "pending" }]);

      failing = false;
      await watcher.poll();
      expect(await statuses()).toEqual(["paid", "reversed", "paid"]);
      // The reversal applied, then given back by the transfer mined again: paid once, what it received unchanged.
      const again = await invoice(held.id);
      expect([again.status, again.received_amount]).toEqual(["paid", "1.100000"]);
      expect((await merchantBalance()) - before).toBe(2_400_000n);
      expect(await outboxTypesOf(held.id)).toEqual([
        "invoice.payment_received",
        "invoice.paid",
        "invoice.reversed",
        "invoice.reinstated",
        "invoice.paid",
      ]);
      expect(await gw.app.db.query("SELECT 1 FROM evm_watch_removals_held")).toEqual([]);
    } finally {
      await other.stop();
    }
  });
});

/**
 * Another process's rail following the deposits, started, with held events tried again at every poll and a handler
 * that applies each event but throws for those `refuses` names: before applying it, or ("after") once it is applied,
 * as a process would whose answer was lost; this file's watcher gives its lease up (its polls took it) for the other's
 * to follow. The caller stops it.
 */
async function followedFailing(
  refuses: (event: RailEvent) => boolean | "after",
  confirmations?: number,
): Promise<EvmRail> {
  const other = anotherProcessRail(gw, {
    ...(confirmations === undefined ? {} : { confirmations }),
    deposits: {
      factory: gw.chain.contracts.forwarderFactory,
      startBlock: 0n,
      pollIntervalMs: 3_600_000,
      lateWatchMs: 3_600_000,
      sweepSaltsMax: 50,
      sinkAttemptsMax: 3,
      heldRetryMs: 0,
    },
  });
  const deps = { settlement: gw.app.settlement, payments: gw.app.payments, logger: silentLogger };
  other.onEvent(async (event) => {
    const refused = refuses(event);
    if (refused === true) throw new Error(`this ${event.kind} event cannot be applied`);
    const verdict = await applyRailEvent(deps, "evm", event);
    if (refused === "after") throw new Error(`this ${event.kind} event was applied, and its answer lost`);
    return verdict;
  });
  await rail.depositWatcher()!.stop();
  await other.start();
  return other;
}

/** The types of the invoice's events in the outbox, in the order they were written. */
async function outboxTypesOf(invoiceId: string): Promise<string[]> {
  const rows = await gw.app.db.query<{ type: string }>(
    "SELECT type FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
    [invoiceId],
  );
  return rows.map((row) => row.type);
}

/**
 * The stranger's transfer of `amount` to `to`, signed once to be sent on both branches of a reorg: the same
 * transaction, as a reorg's new branch usually includes it again.
 */
async function signedTransfer(to: string, amount: bigint): Promise<Hex> {
  return stranger().signTransaction!({
    type: "eip1559",
    chainId: gw.chain.chain.id,
    nonce: await gw.chain.publicClient.getTransactionCount({
      address: stranger().address,
      blockTag: "pending",
    }),
    to: gw.chain.contracts.testUsd,
    data: encodeFunctionData({ abi: testUsdAbi, functionName: "transfer", args: [to as Address, amount] }),
    gas: 100_000n,
    maxFeePerGas: 200_000_000_000n,
    maxPriorityFeePerGas: 1_000_000_000n,
  });
}

function lostLogIndex(receipt: { logs: readonly { address: string; logIndex: number }[] }): number {
  return receipt.logs.find((log) => log.address.toLowerCase() === gw.chain.contracts.testUsd.toLowerCase())!
    .logIndex;
}

describe("under-, over-, repeated and late payments", () => {
  async function confirmed(from: Account, to: string, amount: bigint) {
    await transfer(from, to, amount);
    await mine(2);
    await poll();
  }

  it("under-payment stays open with what came; the rest completes it; more is credited as over-payment", async () => {
    const inv = await createInvoice("10.00");
    const address = inv.instructions.deposit_address!;
    const before = await merchantBalance();
    await confirmed(payer(), address, 4_000_000n);
    const partial = await invoice(inv.id);
    expect(partial.status).toBe("open");
    expect(partial.received_amount).toBe("4.000000");
    await confirmed(stranger(), address, 7_000_000n);
    const paid = await invoice(inv.id);
    expect(paid.status).toBe("paid");
    expect(paid.received_amount).toBe("11.000000"); // over-paid by 1.00: refundable
    expect(paid.payer?.toLowerCase()).toBe(payer().address.toLowerCase()); // the first payer
    // A second payment to a paid invoice's address: credited, counted, announced.
    await confirmed(payer(), address, 1_000_000n);
    expect((await invoice(inv.id)).received_amount).toBe("12.000000");
    expect((await merchantBalance()) - before).toBe(12_000_000n);
    const events = await gw.app.db.query<{ type: string; payload: { amount?: string; late?: boolean } }>(
      "SELECT type, payload FROM outbox WHERE payload->>'invoice_id' = $1 ORDER BY id",
      [inv.id],
    );
    expect(events.map((e) => e.type)).toEqual([
      "invoice.payment_received",
      "invoice.payment_received",
      "invoice.paid",
      "invoice.payment_received",
    ]);
  });

  it("a payment after expiry is credited, flagged late", async () => {
    const inv = await createInvoice("2.00", { expires_in_seconds: 60 });
    const before = await merchantBalance();
    await gw.chain.networkHelpers.time.increase(120); // the chain's clock is past the invoice's expiry
    await confirmed(payer(), inv.instructions.deposit_address!, 2_000_000n);
    const late = await invoice(inv.id);
    expect(late.status).toBe("paid");
    expect(late.received_amount).toBe("2.000000");
    expect((await merchantBalance()) - before).toBe(2_000_000n);
    const [receipt] = await gw.app.db.query<{ late: boolean }>(
      "SELECT late FROM invoice_receipts WHERE invoice_id = $1",
      [inv.id],
    );
    expect(receipt?.late).toBe(true);
  });
});

describe("a sweep whose nonce another transaction took", () => {
  it("is done once that transaction is final, leaving the next pass free to start another", async () => {
    // Signed and journaled, never broadcast, under nonce 0: long passed, at every block with the confirmations.
    const account = gw.chain.walletClient.account;
    const raw = await account.signTransaction!({
      chainId: gw.chain.chain.id,
      type: "eip1559",
      nonce: 0,
      to: gw.chain.contracts.forwarderFactory,
      gas: 100_000n,
      maxFeePerGas: 1n,
      maxPriorityFeePerGas: 1n,
    });
    const key = `sweep:${gw.chain.chain.id}:never-mined`;
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, 0, $5)",
      [key, gw.chain.chain.id, keccak256(raw), raw, account.address.toLowerCase()],
    );
    await gw.app.db.query("INSERT INTO evm_sweeps (key, chain_id, token, salts) VALUES ($1, $2, $3, '[]')", [
      key,
      gw.chain.chain.id,
      gw.chain.contracts.testUsd.toLowerCase(),
    ]);
    // Blocks with their state (the wallet's count is read at one of them: hardhat_mine's blocks read 0).
    for (let i = 0; i < 10; i += 1)
      await gw.chain.provider.request({ method: "evm_mine", params: [] } as never);
    await sweepDepositsOnce(sweepDeps(), rail, gw.chain.chain.id);
    // Before: open at every pass (its receipt never comes), and no sweep of any forwarder was started again.
    const [sweep] = await gw.app.db.query<{ done: boolean }>(
      "SELECT done_at IS NOT NULL AS done FROM evm_sweeps WHERE key = $1",
      [key],
    );
    expect(sweep).toEqual({ done: true });
  });
});
