// The EVM rail's splitter calls through the gateway (EVM_CONFIRMATIONS=1), each mirrored into the ledger by the
// watcher: pay into a split through the HTTP API, payWithAuthorization signed with signTypedData, distribute,
// a recipient's withdrawal, and settleBatch from the hot wallet. Each test pays into a split of its own, so that it
// holds what that test put there whatever ran before it.
import { type Hex, parseSignature } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  authorizationNonceOf,
  receiveWithAuthorizationTypedData,
  referenceFromId,
  revenueSplitterAbi,
  testUsdDefaults,
} from "../../adapters/evm/index.ts";
import { splitByBasisPoints } from "../../core/index.ts";
import { TransferFlags } from "../../gateway/ledger/index.ts";
import { evmMirrorTransferCodes } from "../../gateway/settlement/evm.ts";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

type Split = Awaited<ReturnType<Gateway["createSplit"]>>;

/**
 * A new split among accounts 2 to 4 by `basisPoints`, which no other test of this file may use: a split's id is the
 * hash of its recipients and shares, so the same ones would be another test's split.
 */
const splitOf = (basisPoints: readonly number[]): Promise<Split> =>
  gw.createSplit(
    gw.chain.accounts.slice(2, 5).map((account) => account.address),
    basisPoints,
  );

/** The file's payer: account 6, funded (and the splitter approved) as a test needs. */
const payer = () => gw.chain.accounts[6]!;

/** What the splitter holds for the split, not yet distributed. */
const undistributed = (split: Split) =>
  gw.chain.publicClient.readContract({
    address: gw.chain.contracts.splitter,
    abi: revenueSplitterAbi,
    functionName: "undistributedOf",
    args: [split.splitId, gw.chain.contracts.testUsd],
  });

/**
 * A new split by `basisPoints` (splitOf), paid `amount` directly by the payer, with the watcher caught up: the split's
 * account holds `amount`. Distributed under `distributeKey` when given, its recipients then owed their shares.
 */
async function paidSplit(
  basisPoints: readonly number[],
  amount: bigint,
  distributeKey?: string,
): Promise<Split> {
  const split = await splitOf(basisPoints);
  await gw.fund(payer(), amount);
  await gw.payDirect(payer(), split.splitId, amount, referenceFromId("pay_direct"));
  if (distributeKey !== undefined) {
    const outcome = await gw.rail.distribute({ key: distributeKey, splitId: split.splitId });
    if (outcome.status !== "succeeded") throw new Error(`the split's distribution ${outcome.status}`);
  }
  await gw.watcher.catchUp(10);
  return split;
}

describe("paying into a split through the HTTP API", () => {
  it("pays from the hot wallet with the attempt id as reference, and the ledger mirrors Paid as posted", async () => {
    const split = await splitOf([6000, 2500, 1500]);
    const custodyBefore = await gw.ledgerAccount(gw.mirrorIds.custody(gw.usdc)).catch(() => null);
    const response = await gw.call("POST", "/v1/payments", {
      amount: "2.000001",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_split", split_id: split.splitId },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm" });
    const [attempt] = response.body.attempts;
    const evidence = attempt.evidence as { tx_hash: Hex; log_index: number };

    // The evidence names the Paid log, with the attempt id as the reference.
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: evidence.tx_hash });
    const paid = receipt.logs.find((log) => log.logIndex === evidence.log_index);
    expect(paid?.address.toLowerCase()).toBe(gw.chain.contracts.splitter.toLowerCase());
    expect(await undistributed(split)).toBe(2_000_001n);

    await gw.watcher.catchUp(10);
    const mirrored = await gw.mirrored({ txHash: evidence.tx_hash, logIndex: evidence.log_index });
    expect(mirrored.pending).toMatchObject({
      amount: 2_000_001n,
      code: evmMirrorTransferCodes.paid,
      flags: TransferFlags.pending,
      debitAccountId: gw.mirrorIds.custody(gw.usdc),
      creditAccountId: gw.mirrorIds.split(split.splitId, gw.usdc),
    });
    expect(mirrored.pending?.evidence).toMatchObject({
      rail: "evm",
      reference: `${evidence.tx_hash}:${evidence.log_index}`,
      detail: { ref: referenceFromId(attempt.id), event: "Paid" },
    });
    expect(mirrored.post?.amount).toBe(2_000_001n);
    expect(mirrored.voided).toBeNull();
    const custody = await gw.ledgerAccount(gw.mirrorIds.custody(gw.usdc));
    expect(custody.debitsPosted - (custodyBefore?.debitsPosted ?? 0n)).toBe(2_000_001n);
    const splitAccount = await gw.ledgerAccount(gw.mirrorIds.split(split.splitId, gw.usdc));
    expect(splitAccount.creditsPosted - splitAccount.debitsPosted).toBe(2_000_001n);
  });

  it("a split that does not exist fails the payment as unreachable, and nothing is sent", async () => {
    const nonce = await gw.chain.publicClient.getTransactionCount({
      address: gw.chain.walletClient.account.address,
      blockTag: "pending",
    });
    const response = await gw.call("POST", "/v1/payments", {
      amount: "1",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_split", split_id: `0x${"ab".repeat(32)}` },
    });
    expect(response.body.error).toMatchObject({
      code: "unreachable_destination",
      message: "pay would revert: RevenueSplitterUnknownSplit",
    });
    expect(response.body.error.payment).toMatchObject({ status: "failed", rail: null });
    expect(
      await gw.chain.publicClient.getTransactionCount({
        address: gw.chain.walletClient.account.address,
        blockTag: "pending",
      }),
    ).toBe(nonce);
  });
});

/**
 * `signer` signs the test token's receiveWithAuthorization of `value` from `from` to the splitter, for `ref` into
 * split `splitId`.
 */
const signSplitterAuthorization = (
  signer: Gateway["chain"]["accounts"][number],
  params: { splitId: Hex; from: Hex; value: bigint; validBefore: bigint; ref: Hex },
) =>
  signer.signTypedData!(
    receiveWithAuthorizationTypedData(
      {
        name: testUsdDefaults.name,
        version: testUsdDefaults.version,
        chainId: gw.chain.chain.id,
        verifyingContract: gw.chain.contracts.testUsd,
      },
      {
        from: params.from,
        to: gw.chain.contracts.splitter,
        value: params.value,
        validAfter: 0n,
        validBefore: params.validBefore,
        nonce: authorizationNonceOf(params.splitId, params.ref),
      },
    ),
  );

describe("the rail's splitter calls", () => {
  it("payWithAuthorization: a payer signs once with signTypedData, the gateway submits once", async () => {
    const split = await splitOf([5000, 3000, 2000]);
    await gw.fund(payer(), 10_000_000n);
    const ref = referenceFromId("pay_auth_1");
    const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const signature = await signSplitterAuthorization(payer(), {
      splitId: split.splitId,
      from: payer().address,
      value: 3_000_000n,
      validBefore,
      ref,
    });
    expect(parseSignature(signature).r).toMatch(/^0x/);
    const params = {
      splitId: split.splitId,
      from: payer().address,
      amount: 3_000_000n,
      validAfter: 0n,
      validBefore,
      ref,
      signature,
    };
    const outcome = await gw.rail.payWithAuthorization(params);
    expect(outcome.status).toBe("succeeded");
    if (outcome.status !== "succeeded") return;
    expect(outcome.amount).toBe(3_000_000n);
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: outcome.evidence.txHash });
    expect(receipt.from.toLowerCase()).toBe(gw.chain.walletClient.account.address.toLowerCase());

    // Submitted again: the stored transaction, not a second one.
    const again = await gw.rail.payWithAuthorization(params);
    expect(again).toEqual(outcome);

    await gw.watcher.catchUp(10);
    const mirrored = await gw.mirrored({
      txHash: outcome.evidence.txHash,
      logIndex: outcome.evidence.logIndex,
    });
    expect(mirrored.pending?.amount).toBe(3_000_000n);
    expect(mirrored.post?.amount).toBe(3_000_000n);
    // Paid once: the split holds the one payment, on the chain and in the ledger.
    expect(await undistributed(split)).toBe(3_000_000n);
    const account = await gw.ledgerAccount(gw.mirrorIds.split(split.splitId, gw.usdc));
    expect(account.creditsPosted - account.debitsPosted).toBe(3_000_000n);
  });

  it("a bad signature is refused before anything is sent", async () => {
    const split = await splitOf([4000, 4000, 2000]);
    const hotWallet = gw.chain.walletClient.account.address;
    const nonceBefore = await gw.chain.publicClient.getTransactionCount({
      address: hotWallet,
      blockTag: "pending",
    });
    const other = gw.chain.accounts[7]!;
    const ref = referenceFromId("pay_auth_bad");
    const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const signature = await signSplitterAuthorization(other, {
      splitId: split.splitId,
      from: payer().address,
      value: 1_000_000n,
      validBefore,
      ref,
    });
    const outcome = await gw.rail.payWithAuthorization({
      splitId: split.splitId,
      from: payer().address,
      amount: 1_000_000n,
      validAfter: 0n,
      validBefore,
      ref,
      signature,
    });
    expect(outcome).toMatchObject({ status: "failed", code: "rejected" });
    expect(await gw.chain.publicClient.getTransactionCount({ address: hotWallet, blockTag: "pending" })).toBe(
      nonceBefore,
    );
    expect(await undistributed(split)).toBe(0n);
  });

  it("distribute: the split's account is drained into its recipients' by the contract's remainder rule", async () => {
    // An odd amount: the shares leave a remainder, for the first recipient.
    const split = await paidSplit([5000, 3333, 1667], 5_000_001n);
    const splitAccountId = gw.mirrorIds.split(split.splitId, gw.usdc);
    const before = await gw.ledgerAccount(splitAccountId);
    const owed = before.creditsPosted - before.debitsPosted;
    expect(owed).toBe(5_000_001n);
    const outcome = await gw.rail.distribute({ key: "dist_1", splitId: split.splitId });
    expect(outcome).toMatchObject({ status: "succeeded", amount: owed });
    if (outcome.status !== "succeeded") return;
    await gw.watcher.catchUp(10);

    const shares = splitByBasisPoints(owed, split.basisPoints);
    expect(shares.reduce((sum, share) => sum + share, 0n)).toBe(owed);
    for (const [index, share] of shares.entries()) {
      const mirrored = await gw.mirrored(
        { txHash: outcome.evidence.txHash, logIndex: outcome.evidence.logIndex },
        index,
      );
      expect(mirrored.post?.amount).toBe(share);
      const recipient = await gw.ledgerAccount(gw.mirrorIds.recipient(split.splitId, index, gw.usdc));
      expect(recipient.creditsPosted - recipient.debitsPosted).toBe(share);
      // The contract agrees, recipient by recipient.
      const onChain = await gw.chain.publicClient.readContract({
        address: gw.chain.contracts.splitter,
        abi: revenueSplitterAbi,
        functionName: "balanceOf",
        args: [split.splitId, gw.chain.contracts.testUsd, BigInt(index)],
      });
      expect(onChain).toBe(share);
    }
    const after = await gw.ledgerAccount(splitAccountId);
    expect(after.creditsPosted - after.debitsPosted).toBe(0n);
  });

  it("a recipient's withdrawal moves its account back to custody", async () => {
    const split = await paidSplit([7000, 2000, 1000], 4_000_000n, "dist_withdrawal");
    const custodyBefore = await gw.ledgerAccount(gw.mirrorIds.custody(gw.usdc));
    const recipientAccount = gw.mirrorIds.recipient(split.splitId, 1, gw.usdc);
    const owed = await gw.ledgerAccount(recipientAccount);
    const amount = owed.creditsPosted - owed.debitsPosted;
    expect(amount).toBeGreaterThan(0n);
    const recipient = gw.chain.accounts.find((a) => a.address === split.recipients[1])!;
    await gw.send(recipient, {
      address: gw.chain.contracts.splitter,
      abi: revenueSplitterAbi,
      functionName: "withdraw",
      args: [gw.chain.contracts.testUsd, [...split.recipients], [...split.basisPoints], 1n],
    });
    await gw.watcher.catchUp(10);
    const after = await gw.ledgerAccount(recipientAccount);
    expect(after.creditsPosted - after.debitsPosted).toBe(0n);
    const custody = await gw.ledgerAccount(gw.mirrorIds.custody(gw.usdc));
    expect(custody.creditsPosted - custodyBefore.creditsPosted).toBe(amount);
    // Custody = what the contract holds.
    const held = await gw.tokenBalance(gw.chain.contracts.splitter);
    expect(custody.debitsPosted - custody.creditsPosted).toBe(held);
  });

  it("settleBatch: netted payouts leave the hot wallet once; the mirror records the chain's side", async () => {
    const payees = gw.chain.accounts.slice(2, 5).map((a) => a.address);
    const amounts = [1_000n, 2_000n, 3_000n];
    const ref = referenceFromId("batch_1");
    const payeesBefore = await Promise.all(payees.map((p) => gw.tokenBalance(p)));
    const outcome = await gw.rail.settleBatch({ payees, amounts, ref });
    expect(outcome).toMatchObject({ status: "succeeded", amount: 6_000n });
    if (outcome.status !== "succeeded") return;
    // Again with the same reference: the stored transaction, not a second payout.
    expect(await gw.rail.settleBatch({ payees, amounts, ref })).toEqual(outcome);
    const payeesAfter = await Promise.all(payees.map((p) => gw.tokenBalance(p)));
    expect(payeesAfter.map((after, i) => after - payeesBefore[i]!)).toEqual(amounts);

    await gw.watcher.catchUp(10);
    const mirrored = await gw.mirrored({
      txHash: outcome.evidence.txHash,
      logIndex: outcome.evidence.logIndex,
    });
    expect(mirrored.post).toMatchObject({
      amount: 6_000n,
      code: evmMirrorTransferCodes.batchSettled,
      debitAccountId: gw.mirrorIds.batchPayouts(gw.usdc),
      creditAccountId: gw.mirrorIds.batchOutflow(gw.usdc),
    });
    expect(mirrored.post?.evidence?.reference).toBe(
      `${outcome.evidence.txHash}:${outcome.evidence.logIndex}`,
    );
  });
});
