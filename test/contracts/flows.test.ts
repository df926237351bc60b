// The contract calls the gateway's EVM rail makes, with viem, against Hardhat's in-process chain: deploy,
// create a split, pay, payWithAuthorization (signed with signTypedData), distribute, withdraw, settleBatch,
// and the events the ledger mirrors, decoded.
import fc from "fast-check";
import { network } from "hardhat";
import {
  type Address,
  BaseError,
  ContractFunctionRevertedError,
  getAddress,
  type Hex,
  maxUint256,
  parseEventLogs,
  parseSignature,
} from "viem";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  authorizationNonceOf,
  batchHashOf,
  canonicalSplit,
  deployContracts,
  idFromReference,
  readContractArtifact,
  receiveWithAuthorizationTypedData,
  referenceFromId,
  revenueSplitterAbi,
  settleBatchPayeesMax,
  splitIdOf,
  splitRecipientsMax,
  testUsdAbi,
  testUsdDefaults,
  testUsdErrorsAbi,
} from "../../adapters/evm/index.ts";
import { basisPointsTotal, splitByBasisPoints } from "../../core/index.ts";

type Connection = Awaited<ReturnType<typeof network.connect>>;
type Viem = Connection["viem"];
type PublicClient = Awaited<ReturnType<Viem["getPublicClient"]>>;
type WalletClient = Awaited<ReturnType<Viem["getWalletClients"]>>[number];
type Snapshot = Awaited<ReturnType<Connection["networkHelpers"]["takeSnapshot"]>>;

const splitterWithTokenErrors = [...revenueSplitterAbi, ...testUsdErrorsAbi] as const;

let connection: Connection;
let publicClient: PublicClient;
let gateway: WalletClient;
let payer: WalletClient;
let testUsd: Address;
let splitter: Address;
let chainId: number;
let deployed: Snapshot;

// Ascending, as a split requires.
const recipientA = getAddress("0x0000000000000000000000000000000000000b0b");
const recipientB = getAddress("0x00000000000000000000000000000000000a11ce");
const recipientC = getAddress("0x00000000000000000000000000000000000c4a51");

beforeAll(async () => {
  connection = await network.connect();
  publicClient = await connection.viem.getPublicClient();
  const wallets = await connection.viem.getWalletClients();
  gateway = wallets[0]!;
  payer = wallets[1]!;
  ({ testUsd, splitter } = await deployContracts({ walletClient: gateway, publicClient }));
  chainId = await publicClient.getChainId();
  await mined(
    await gateway.writeContract({
      address: testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.account.address, 1_000_000_000n],
    }),
  );
  await mined(
    await gateway.writeContract({
      address: testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [gateway.account.address, 1_000_000_000n],
    }),
  );
  deployed = await connection.networkHelpers.takeSnapshot();
});

// Every test starts from the deployment and makes the state it needs itself, so what one leaves behind (a
// split's balances, an approval, the splitter's holdings) never decides another's outcome, in any order.
beforeEach(async () => {
  await deployed.restore();
});

afterAll(async () => {
  await connection?.close();
});

async function mined(hash: Hex) {
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  expect(receipt.status).toBe("success");
  return receipt;
}

async function tokenBalance(owner: Address): Promise<bigint> {
  return publicClient.readContract({
    address: testUsd,
    abi: testUsdAbi,
    functionName: "balanceOf",
    args: [owner],
  });
}

/** The custom error a call reverts with, decoded with the splitter's and the token's errors. */
async function revertName(call: Promise<unknown>): Promise<string | undefined> {
  try {
    await call;
  } catch (error) {
    if (error instanceof BaseError) {
      const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
      if (reverted instanceof ContractFunctionRevertedError) return reverted.data?.errorName;
    }
    throw error;
  }
  return undefined;
}

/** Lets the splitter move the wallet's TestUSD with transferFrom, as pay and settleBatch do. */
async function approveSplitter(wallet: WalletClient) {
  await mined(
    await wallet.writeContract({
      address: testUsd,
      abi: testUsdAbi,
      functionName: "approve",
      args: [splitter, maxUint256],
    }),
  );
}

async function createSplit(recipients: readonly Address[], basisPoints: readonly number[]): Promise<Hex> {
  const receipt = await mined(
    await gateway.writeContract({
      address: splitter,
      abi: revenueSplitterAbi,
      functionName: "createSplit",
      args: [recipients, basisPoints],
    }),
  );
  const [created] = parseEventLogs({
    abi: revenueSplitterAbi,
    eventName: "SplitCreated",
    logs: receipt.logs,
  });
  const splitId = splitIdOf(recipients, basisPoints);
  if (created) expect(created.args.splitId).toBe(splitId);
  return splitId;
}

describe("deployment", () => {
  it("deploys a USDC-like TestUSD and the splitter", async () => {
    const read = <F extends "name" | "symbol" | "version" | "decimals">(functionName: F) =>
      publicClient.readContract({ address: testUsd, abi: testUsdAbi, functionName });
    expect(await read("name")).toBe(testUsdDefaults.name);
    expect(await read("version")).toBe(testUsdDefaults.version);
    expect(await read("decimals")).toBe(testUsdDefaults.decimals);
    expect(await publicClient.getCode({ address: splitter })).toMatch(/^0x[0-9a-f]{100,}$/);
  });

  it("agrees with the contract on its limits", async () => {
    const read = (functionName: "RECIPIENTS_MAX" | "SETTLE_BATCH_PAYEES_MAX" | "BASIS_POINTS_TOTAL") =>
      publicClient.readContract({ address: splitter, abi: revenueSplitterAbi, functionName });
    expect(await read("RECIPIENTS_MAX")).toBe(BigInt(splitRecipientsMax));
    expect(await read("SETTLE_BATCH_PAYEES_MAX")).toBe(BigInt(settleBatchPayeesMax));
    expect(await read("BASIS_POINTS_TOTAL")).toBe(basisPointsTotal);
  });

  it("keeps the ABIs in adapters/evm/abi.generated.ts equal to the compiled contracts", async () => {
    // If this fails: node scripts/evm-abi.ts
    expect((await readContractArtifact("RevenueSplitter")).abi).toEqual(revenueSplitterAbi);
    expect((await readContractArtifact("TestUSD")).abi).toEqual(testUsdAbi);
  });
});

describe("splits", () => {
  it("computes split ids in TypeScript exactly as the contract does", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.bigInt({ min: 1n, max: 2n ** 160n - 1n }), fc.integer({ min: 1, max: 9999 })), {
          minLength: 1,
          maxLength: 12,
        }),
        async (pairs) => {
          const recipients = pairs.map(([n]) => `0x${n.toString(16).padStart(40, "0")}` as Address);
          const basisPoints = pairs.map(([, bps]) => bps);
          const onChain = await publicClient.readContract({
            address: splitter,
            abi: revenueSplitterAbi,
            functionName: "splitIdOf",
            args: [recipients, basisPoints],
          });
          expect(splitIdOf(recipients, basisPoints)).toBe(onChain);
        },
      ),
      { numRuns: 25, seed: 4 },
    );
  });

  it("creates a split once; creating it again is harmless and emits nothing", async () => {
    const split = canonicalSplit({ recipients: [recipientB, recipientA], basisPoints: [4000, 6000] });
    expect(split.recipients).toEqual([recipientA, recipientB]);
    const splitId = await createSplit(split.recipients, split.basisPoints);
    const again = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "createSplit",
        args: [split.recipients, split.basisPoints],
      }),
    );
    expect(again.logs).toHaveLength(0);
    expect(
      await publicClient.readContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "basisPointsOf",
        args: [splitId],
      }),
    ).toEqual([6000, 4000]);
  });

  it("refuses an unsorted split with the index in the error", async () => {
    expect(
      await revertName(
        publicClient.simulateContract({
          account: gateway.account,
          address: splitter,
          abi: revenueSplitterAbi,
          functionName: "createSplit",
          args: [
            [recipientB, recipientA],
            [5000, 5000],
          ],
        }),
      ),
    ).toBe("RevenueSplitterRecipientsNotAscending");
  });
});

describe("paying into a split, distributing, withdrawing", () => {
  const recipients = [recipientA, recipientB, recipientC];
  const basisPoints = [3333, 3333, 3334];
  const payRef = referenceFromId("pay_01jd0000000000000000000001");
  const authorizedRef = referenceFromId("pay_01jd0000000000000000000002");
  let splitId: Hex;

  beforeEach(async () => {
    splitId = await createSplit(recipients, basisPoints);
  });

  // The story's steps, each the subject of one test below. A later step's test takes the earlier steps first, so
  // distribute always finds both payments (3_000_001) and withdraw the balances distribute credited.

  /** The payer approves the splitter and pays 1_000_001 into the split. */
  async function pay() {
    await approveSplitter(payer);
    return mined(
      await payer.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "pay",
        args: [splitId, testUsd, 1_000_001n, payRef],
      }),
    );
  }

  /** The payer signs ReceiveWithAuthorization for 2_000_000 into the split once; the gateway submits it. */
  async function payWithAuthorization() {
    const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const domain = {
      name: testUsdDefaults.name,
      version: testUsdDefaults.version,
      chainId,
      verifyingContract: testUsd,
    };
    const signature = await payer.signTypedData({
      account: payer.account,
      ...receiveWithAuthorizationTypedData(domain, {
        from: payer.account.address,
        to: splitter,
        value: 2_000_000n,
        validAfter: 0n,
        validBefore,
        nonce: authorizationNonceOf(splitId, authorizedRef),
      }),
    });
    const { v, r, s } = parseSignature(signature);
    const args = [
      splitId,
      testUsd,
      payer.account.address,
      2_000_000n,
      0n,
      validBefore,
      authorizedRef,
      Number(v),
      r,
      s,
    ] as const;
    const receipt = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "payWithAuthorization",
        args,
      }),
    );
    return { args, receipt };
  }

  async function distribute() {
    return mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "distribute",
        args: [splitId, testUsd, referenceFromId("dis_1")],
      }),
    );
  }

  it("pay: transferFrom into the split, Paid event with split id, token, payer, amount, reference", async () => {
    const receipt = await pay();
    const [paid] = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs });
    expect(paid?.args).toEqual({
      splitId,
      token: testUsd,
      payer: getAddress(payer.account.address),
      amount: 1_000_001n,
      ref: payRef,
    });
    expect(idFromReference(paid!.args.ref)).toBe("pay_01jd0000000000000000000001");
    expect(typeof paid?.logIndex).toBe("number");
    expect(
      await publicClient.readContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "undistributedOf",
        args: [splitId, testUsd],
      }),
    ).toBe(1_000_001n);
  });

  it("payWithAuthorization: the payer signs ReceiveWithAuthorization once, the gateway submits", async () => {
    const payerBefore = await tokenBalance(payer.account.address);
    const { args, receipt } = await payWithAuthorization();
    const [paid] = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs });
    expect(paid?.args).toMatchObject({
      splitId,
      payer: getAddress(payer.account.address),
      amount: 2_000_000n,
      ref: authorizedRef,
    });
    expect(payerBefore - (await tokenBalance(payer.account.address))).toBe(2_000_000n);
    expect(receipt.from).toBe(gateway.account.address.toLowerCase());

    // The same signature again: the token refuses the used nonce.
    expect(
      await revertName(
        publicClient.simulateContract({
          account: gateway.account,
          address: splitter,
          abi: splitterWithTokenErrors,
          functionName: "payWithAuthorization",
          args,
        }),
      ),
    ).toBe("ERC3009UsedAuthorization");
  });

  it("distribute: one call credits every recipient, by the same rule as splitByBasisPoints", async () => {
    await pay();
    await payWithAuthorization();
    const receipt = await distribute();
    const [distributed] = parseEventLogs({
      abi: revenueSplitterAbi,
      eventName: "Distributed",
      logs: receipt.logs,
    });
    expect(distributed?.args).toMatchObject({ splitId, token: testUsd, amount: 3_000_001n });
    const expected = splitByBasisPoints(3_000_001n, basisPoints);
    for (const [index, share] of expected.entries()) {
      expect(
        await publicClient.readContract({
          address: splitter,
          abi: revenueSplitterAbi,
          functionName: "balanceOf",
          args: [splitId, testUsd, BigInt(index)],
        }),
      ).toBe(share);
    }
    expect(
      await revertName(
        publicClient.simulateContract({
          account: gateway.account,
          address: splitter,
          abi: revenueSplitterAbi,
          functionName: "distribute",
          args: [splitId, testUsd, referenceFromId("dis_2")],
        }),
      ),
    ).toBe("RevenueSplitterNothingToDistribute");
  });

  it("withdraw and withdrawAll pay recipients their balances, with Withdrawn events", async () => {
    await pay();
    await payWithAuthorization();
    await distribute();
    const expected = splitByBasisPoints(3_000_001n, basisPoints);
    const receipt = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "withdraw",
        args: [testUsd, recipients, basisPoints, 1n],
      }),
    );
    const [one] = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Withdrawn", logs: receipt.logs });
    expect(one?.args).toEqual({
      splitId,
      token: testUsd,
      recipient: recipientB,
      index: 1n,
      amount: expected[1],
    });
    expect(await tokenBalance(recipientB)).toBe(expected[1]);

    const all = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "withdrawAll",
        args: [testUsd, recipients, basisPoints],
      }),
    );
    const paidOut = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Withdrawn", logs: all.logs });
    expect(paidOut.map((log) => [log.args.recipient, log.args.amount])).toEqual([
      [recipientA, expected[0]],
      [recipientC, expected[2]],
    ]);
    expect(await tokenBalance(splitter)).toBe(0n);
  });
});

describe("settleBatch", () => {
  it("pays many netted payouts in one transaction, once per reference", async () => {
    await approveSplitter(gateway);
    const payees = Array.from({ length: 25 }, (_, i) =>
      getAddress(`0x${"5e77".padEnd(36, "0")}${(i + 1).toString(16).padStart(4, "0")}`),
    );
    const amounts = payees.map((_, i) => 10_000n + BigInt(i));
    const ref = referenceFromId("set_01jd0000000000000000000001");
    const receipt = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "settleBatch",
        args: [testUsd, payees, amounts, ref],
      }),
    );
    const total = amounts.reduce((sum, amount) => sum + amount, 0n);
    const [settled] = parseEventLogs({
      abi: revenueSplitterAbi,
      eventName: "BatchSettled",
      logs: receipt.logs,
    });
    expect(settled?.args).toEqual({
      token: testUsd,
      payer: getAddress(gateway.account.address),
      ref,
      payeeCount: 25n,
      total,
      batchHash: batchHashOf(payees, amounts),
    });
    // Each leg is the token's own Transfer event in the same transaction.
    const transfers = parseEventLogs({ abi: testUsdAbi, eventName: "Transfer", logs: receipt.logs });
    expect(transfers.map((log) => [log.args.to, log.args.value])).toEqual(
      payees.map((p, i) => [p, amounts[i]]),
    );
    for (const [i, payee] of payees.entries()) expect(await tokenBalance(payee)).toBe(amounts[i]);

    expect(
      await revertName(
        publicClient.simulateContract({
          account: gateway.account,
          address: splitter,
          abi: revenueSplitterAbi,
          functionName: "settleBatch",
          args: [testUsd, payees, amounts, ref],
        }),
      ),
    ).toBe("RevenueSplitterBatchAlreadySettled");
  });
});

describe("the documented limits", () => {
  // EIP-7825 caps a transaction at 2^24 gas; the worst case of every call at the limits must fit under it.
  const transactionGasCap = 2n ** 24n;

  it("the largest split and the largest batch, to fresh addresses, fit the per-transaction gas cap", async () => {
    const fresh = (group: number, count: number) =>
      Array.from({ length: count }, (_, i) =>
        getAddress(`0x${group.toString(16).padStart(4, "0")}${(i + 1).toString(16).padStart(36, "0")}`),
      );
    const max = Number(
      await publicClient.readContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "RECIPIENTS_MAX",
      }),
    );
    const recipients = fresh(0xaaaa, max);
    const totalBps = Number(basisPointsTotal);
    const base = Math.floor(totalBps / max);
    const basisPoints = recipients.map((_, i) => (i < totalBps - base * max ? base + 1 : base));
    expect(basisPoints.reduce((a, b) => a + b, 0)).toBe(10_000);
    // The gateway pays into the split and settles the batch from its own TestUSD, both with transferFrom.
    await approveSplitter(gateway);
    const created = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "createSplit",
        args: [recipients, basisPoints],
      }),
    );
    const splitId = splitIdOf(recipients, basisPoints);
    await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "pay",
        args: [splitId, testUsd, 500_000_000n, referenceFromId("limit")],
      }),
    );
    const distributed = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "distribute",
        args: [splitId, testUsd, referenceFromId("limit")],
      }),
    );
    const withdrawn = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "withdrawAll",
        args: [testUsd, recipients, basisPoints],
      }),
    );
    const payees = fresh(0xbbbb, settleBatchPayeesMax);
    const settled = await mined(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "settleBatch",
        args: [testUsd, payees, payees.map(() => 1_000n), referenceFromId("limit")],
      }),
    );
    for (const receipt of [created, distributed, withdrawn, settled]) {
      expect(receipt.gasUsed).toBeLessThan(transactionGasCap);
    }
    console.log(
      `worst cases at ${max} recipients / ${settleBatchPayeesMax} payees: createSplit ${created.gasUsed}, first distribute ${distributed.gasUsed}, ` +
        `withdrawAll to new holders ${withdrawn.gasUsed}, settleBatch to new holders ${settled.gasUsed}`,
    );
  });
});
