// A payout attempt and a netted batch have one outcome on the EVM rail, their first (the Rail contract: "asked
// again, it reports the first outcome"), refusals included. A caller told "refused" moves on: the payment tries
// another attempt, netting puts the batch's payouts back in the queue. Before, a refusal was not kept, so the same
// attempt or batch asked again later — by another process whose gas cap admitted it, or by a flush whose lease had
// run out while it was still preparing the send — was sent beside what replaced it: paid twice.
import { encodeFunctionData, erc20Abi } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvmRail, referenceFromId } from "../../adapters/evm/index.ts";
import { createSendJournal, type SendJournal, sendOnce } from "../../adapters/evm/send-journal.ts";
import type { OutgoingAttempt } from "../../core/index.ts";
import { latch } from "../support/latch.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

const normalGas = { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n };

/** A rail on the gateway's database and hot wallet, as another gateway process would run it. */
const processRail = (gas: { priorityFeeWei: bigint; maxFeeWei: bigint }) => anotherProcessRail(gw, { gas });

/** A rail whose gas cap is below any base fee: it refuses every send, having signed nothing. */
const cappedRail = () => processRail({ priorityFeeWei: 1n, maxFeeWei: 1n });

function payoutBatchOf(rail: EvmRail): NonNullable<EvmRail["payoutBatch"]> {
  if (rail.payoutBatch === undefined) throw new Error("the EVM rail pays netted batches");
  return rail.payoutBatch;
}

function journal(): SendJournal {
  return createSendJournal({
    db: gw.app.db,
    publicClient: gw.chain.publicClient,
    walletClient: gw.chain.walletClient,
    confirmations: 1,
    receiptTimeoutMs: 30_000,
    gas: normalGas,
    replaceAfterMs: 120_000,
  });
}

const sendsUnder = async (key: string) =>
  (await gw.app.db.query("SELECT tx_hash FROM evm_sends WHERE attempt_id = $1", [key])).length;

const nextNonce = async () =>
  (
    await gw.app.db.query<{ next_nonce: bigint }>(
      "SELECT next_nonce FROM evm_nonces WHERE chain_id = $1 AND wallet = $2",
      [gw.chain.chain.id, gw.chain.walletClient.account.address.toLowerCase()],
    )
  )[0]?.next_nonce ?? 0n; // no row yet: nothing taken (a test run first, before any send of the wallet)

/** A harmless call from the hot wallet: approving nothing to a payee. */
const harmlessCall = () => ({
  to: gw.chain.contracts.testUsd,
  data: encodeFunctionData({
    abi: erc20Abi,
    functionName: "approve",
    args: [gw.chain.accounts[7]!.address, 0n],
  }),
});

describe("a refusal is the outcome of its key", () => {
  it("a payout attempt refused by one process is not sent by another asked the same attempt later", async () => {
    const payee = gw.chain.accounts[8]!.address;
    const attempt: OutgoingAttempt = {
      id: "att_first_outcome",
      paymentId: "pay_first_outcome",
      tenantId: "ten_test",
      amount: 1_500n,
      destination: { kind: "evm_address", address: payee },
      feeMax: 1_000_000n,
    };
    const before = await gw.tokenBalance(payee);
    const refused = await cappedRail().execute(attempt);
    expect(refused).toMatchObject({ status: "failed", code: "fee_above_max" });
    // Before: this process's cap admitted the gas, and it paid the attempt its caller had failed.
    const again = await processRail(normalGas).execute(attempt);
    expect(again).toMatchObject({ status: "failed", code: "fee_above_max" });
    expect(await sendsUnder(attempt.id)).toBe(0);
    expect(await gw.tokenBalance(payee)).toBe(before);
  });

  it("a netted batch refused once stays refused under its reference", async () => {
    const payee = gw.chain.accounts[6]!.address;
    const batch = {
      reference: referenceFromId("nb_first_outcome"),
      payouts: [{ destination: { kind: "evm_address" as const, address: payee }, amount: 2_500n }],
    };
    const before = await gw.tokenBalance(payee);
    expect(await payoutBatchOf(cappedRail())(batch)).toMatchObject({
      status: "failed",
      code: "fee_above_max",
    });
    expect(await payoutBatchOf(processRail(normalGas))(batch)).toMatchObject({
      status: "failed",
      code: "fee_above_max",
    });
    expect(await gw.tokenBalance(payee)).toBe(before);
  });

  it("a refusal kept while another process prepares the same send: that process signs nothing", async () => {
    const key = "test-first-outcome:refused-meanwhile";
    const preparing = latch();
    const proceed = latch();
    const slow = sendOnce(
      journal(),
      key,
      async () => {
        preparing.release();
        await proceed.done;
        return harmlessCall();
      },
      { refusalIsFinal: true },
    );
    await preparing.done;
    const nonceBefore = await nextNonce();
    const refusal = {
      status: "failed" as const,
      code: "rail_unavailable" as const,
      revert: null,
      message: "the node did not answer the estimate",
      busy: false,
    };
    expect(await sendOnce(journal(), key, async () => refusal, { refusalIsFinal: true })).toEqual(refusal);
    proceed.release();
    // Before: the slow process signed and broadcast it after the other's caller had moved on.
    expect(await slow).toEqual(refusal);
    expect(await sendsUnder(key)).toBe(0);
    expect(await nextNonce()).toBe(nonceBefore);
  });

  it("a refusal reached while another process signed the same send: the send is the outcome", async () => {
    const key = "test-first-outcome:sent-meanwhile";
    const preparing = latch();
    const proceed = latch();
    const refusing = sendOnce(
      journal(),
      key,
      async () => {
        preparing.release();
        await proceed.done;
        return {
          status: "failed",
          code: "rail_unavailable",
          revert: null,
          message: "no answer",
          busy: false,
        };
      },
      { refusalIsFinal: true },
    );
    await preparing.done;
    const sent = await sendOnce(journal(), key, async () => harmlessCall(), { refusalIsFinal: true });
    expect(sent).toMatchObject({ attempt_id: key });
    proceed.release();
    expect(await refusing).toEqual(sent);
    const kept = await gw.app.db.query("SELECT 1 FROM evm_send_refusals WHERE attempt_id = $1", [key]);
    expect(kept).toHaveLength(0);
  });

  it("a key retried by design after a refusal (a sweep, an authorization given back) may still be sent", async () => {
    const key = "test-first-outcome:retried";
    const refusal = {
      status: "failed" as const,
      code: "rail_unavailable" as const,
      revert: null,
      message: "x",
      busy: false,
    };
    expect(await sendOnce(journal(), key, async () => refusal)).toEqual(refusal);
    expect(await sendOnce(journal(), key, async () => harmlessCall())).toMatchObject({ attempt_id: key });
  });
});
