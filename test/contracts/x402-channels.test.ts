// x402's `batch-settlement` scheme against our contracts, with the official packages on both sides: X402ChannelEscrow
// and X402Erc3009DepositCollector at the canonical addresses of Hardhat's in-process chain (test/support/
// x402-channels.ts); @x402/evm's batch-settlement client (a payer's viem account holding TestUSD) signs the deposit
// (ERC-3009 receiveWithAuthorization to the collector) and the cumulative vouchers; @x402/evm's batch-settlement
// facilitator (behind @x402/core's x402Facilitator, with the receiver's authorizer key) verifies them against the chain,
// submits the deposit, one claimWithSignature for many vouchers or many channels, the settle that pays the receiver,
// and a refund bundled with a claim (multicall). Token balances and the escrow's state are read back from the chain.
import { x402Facilitator } from "@x402/core/facilitator";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { toClientEvmSigner, toFacilitatorEvmSigner } from "@x402/evm";
import {
  BatchSettlementEvmScheme as BatchClient,
  InMemoryClientChannelStorage,
  signVoucher,
  updateChannelFromSettle,
} from "@x402/evm/batch-settlement/client";
import { BatchSettlementEvmScheme as BatchFacilitator } from "@x402/evm/batch-settlement/facilitator";
import { network } from "hardhat";
import {
  type Abi,
  type Address,
  createWalletClient,
  custom,
  type EIP1193Provider,
  type Hex,
  keccak256,
  type PublicClient,
  publicActions,
  stringToHex,
} from "viem";
import { mnemonicToAccount, type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { hardhatMnemonic } from "../../adapters/evm/dev-chain.ts";
import { deployContracts, testUsdAbi, testUsdDefaults } from "../../adapters/evm/index.ts";
import {
  batchSettlementAddress,
  erc3009DepositCollectorAddress,
  installX402Channels,
  x402ChannelEscrowAbi,
} from "../support/x402-channels.ts";

type Connection = Awaited<ReturnType<typeof network.connect>>;
type Snapshot = Awaited<ReturnType<Connection["networkHelpers"]["takeSnapshot"]>>;
type Payer = Awaited<ReturnType<typeof newPayer>>;

const price = 1_000n; // a tenth of a cent of a 6-decimal dollar
const payments = 100;
const withdrawDelay = 900;
/** What the server asks as a first deposit: room for the payments here and some left to refund. */
const minDeposit = price * BigInt(payments + 50);

let connection: Connection;
let publicClient: PublicClient;
let testUsd: Address;
let escrowAbi: Abi;
let facilitator: x402Facilitator;
let net: `eip155:${number}`;
let installed: Snapshot;
const receiver = mnemonicToAccount(hardhatMnemonic, { addressIndex: 3 }).address;
const receiverAuthorizer = privateKeyToAccount(keccak256(stringToHex("x402 channels receiver authorizer")));

/** The requirements a batch-settlement resource server would announce for one paid request. */
function requirements(overrides: Partial<PaymentRequirements> = {}): PaymentRequirements {
  return {
    scheme: "batch-settlement",
    network: net,
    amount: price.toString(),
    asset: testUsd,
    payTo: receiver,
    maxTimeoutSeconds: 300,
    extra: {
      name: testUsdDefaults.name,
      version: testUsdDefaults.version,
      receiverAuthorizer: receiverAuthorizer.address,
      withdrawDelay,
      minDeposit: minDeposit.toString(),
    },
    ...overrides,
  };
}

function envelope(payload: Record<string, unknown>, accepted = requirements()): PaymentPayload {
  return { x402Version: 2, accepted, payload } as PaymentPayload;
}

async function tokenBalance(owner: Address): Promise<bigint> {
  return publicClient.readContract({
    address: testUsd,
    abi: testUsdAbi,
    functionName: "balanceOf",
    args: [owner],
  });
}

async function read<T>(functionName: string, args: readonly unknown[]): Promise<T> {
  return (await publicClient.readContract({
    address: batchSettlementAddress,
    abi: escrowAbi,
    functionName,
    args,
  })) as T;
}

/** A payer: a fresh key holding TestUSD, with the official batch-settlement client and its channel storage. */
async function newPayer(label: string) {
  const account: PrivateKeyAccount = privateKeyToAccount(
    keccak256(stringToHex(`x402 channels payer ${label}`)),
  );
  const [minter] = await connection.viem.getWalletClients();
  await publicClient.waitForTransactionReceipt({
    hash: await minter!.writeContract({
      address: testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [account.address, 10n ** 9n],
    }),
  });
  const storage = new InMemoryClientChannelStorage();
  const signer = toClientEvmSigner(account, publicClient as never);
  const client = new BatchClient(signer, { storage });
  /** The next payment's payload, and the client's bookkeeping as its PAYMENT-RESPONSE would leave it. */
  const pay = async () => {
    const result = await client.createPaymentPayload(2, requirements());
    const payload = result.payload as {
      type: "deposit" | "voucher";
      channelConfig: Record<string, unknown>;
      voucher: { channelId: Hex; maxClaimableAmount: string; signature: Hex };
      deposit?: { amount: string };
    };
    const charged = async () =>
      updateChannelFromSettle(storage, {
        server: { chargedAmount: price.toString() },
        local: {
          channelId: payload.voucher.channelId,
          requestAmount: price.toString(),
          ...(payload.deposit ? { depositAmount: payload.deposit.amount } : {}),
        },
      });
    return { envelope: envelope(result.payload), payload, charged };
  };
  return { account, client, storage, pay };
}

/** A payer whose first payment, the deposit, the facilitator has verified and settled into the payer's channel. */
async function depositedPayer(label: string) {
  const payer = await newPayer(label);
  const { envelope: deposit, payload, charged } = await payer.pay();
  const settled = await facilitator.settle(deposit, requirements());
  expect(settled, settled.errorMessage).toMatchObject({ success: true });
  await charged();
  return { ...payer, channelId: payload.voucher.channelId, depositAmount: BigInt(payload.deposit!.amount) };
}

/** The payer's next `count` payments: cumulative vouchers, each verified by the facilitator and then charged. */
async function payVouchers(payer: Payer, count: number) {
  const vouchers = [];
  for (let i = 0; i < count; i += 1) {
    const { envelope: voucher, payload, charged } = await payer.pay();
    const verified = await facilitator.verify(voucher, requirements());
    await charged();
    vouchers.push({ payload, verified });
  }
  return vouchers;
}

/** A payer after the story's first `payments` payments (the deposit, then cumulative vouchers), with the last voucher. */
async function payerWithVouchers(label: string) {
  const payer = await depositedPayer(label);
  const vouchers = await payVouchers(payer, payments - 1);
  for (const { verified } of vouchers) expect(verified.isValid, verified.invalidReason).toBe(true);
  return { ...payer, lastVoucher: vouchers.at(-1)!.payload };
}

function claimOf(payload: {
  channelConfig: Record<string, unknown>;
  voucher: { maxClaimableAmount: string; signature: Hex };
}) {
  return {
    voucher: { channel: payload.channelConfig, maxClaimableAmount: payload.voucher.maxClaimableAmount },
    signature: payload.voucher.signature,
    totalClaimed: payload.voucher.maxClaimableAmount,
  };
}

/** A payer after the receiver has claimed its last voucher and settled the claim: where a refund starts. */
async function payerAfterSettle(label: string) {
  const payer = await payerWithVouchers(label);
  for (const request of [
    { type: "claim", claims: [claimOf(payer.lastVoucher)] },
    { type: "settle", receiver, token: testUsd },
  ]) {
    const done = await facilitator.settle(envelope(request), requirements());
    expect(done, done.errorMessage).toMatchObject({ success: true });
  }
  return payer;
}

beforeAll(async () => {
  connection = await network.connect();
  publicClient = (await connection.viem.getPublicClient()) as unknown as PublicClient;
  const [deployer] = await connection.viem.getWalletClients();
  ({ testUsd } = await deployContracts({ walletClient: deployer!, publicClient }));
  await installX402Channels({
    publicClient,
    walletClient: deployer as never,
    setCode: (address, code) => connection.networkHelpers.setCode(address, code),
  });
  escrowAbi = await x402ChannelEscrowAbi();
  net = `eip155:${await publicClient.getChainId()}`;
  const submitter = createWalletClient({
    account: mnemonicToAccount(hardhatMnemonic, { addressIndex: 7 }),
    transport: custom(connection.provider as unknown as EIP1193Provider),
    chain: deployer!.chain,
  }).extend(publicActions);
  const signer = toFacilitatorEvmSigner({ ...submitter, address: submitter.account.address } as never);
  facilitator = new x402Facilitator().register(net, new BatchFacilitator(signer, receiverAuthorizer));
  installed = await connection.networkHelpers.takeSnapshot();
});

// Every test starts from the installed contracts with a channel of its own, and takes the story's earlier steps
// itself (the helpers above), so the escrow's and the receiver's totals it checks hold only its own payments.
beforeEach(async () => {
  await installed.restore();
});

afterAll(async () => {
  await connection?.close();
});

describe("x402 batch-settlement on X402ChannelEscrow, official client and facilitator", () => {
  it("verifies and submits the client's deposit: the payer's TestUSD goes through the collector into the channel", async () => {
    const first = await newPayer("one");
    const payerBefore = await tokenBalance(first.account.address);
    const { envelope: deposit, payload, charged } = await first.pay();
    expect(payload.type).toBe("deposit");
    const channelId = payload.voucher.channelId;
    const depositAmount = BigInt(payload.deposit!.amount);
    expect(depositAmount).toBe(minDeposit);
    expect(await read<Hex>("getChannelId", [payload.channelConfig])).toBe(channelId);

    const verified = await facilitator.verify(deposit, requirements());
    expect(verified).toMatchObject({ isValid: true, payer: first.account.address });
    const settled = await facilitator.settle(deposit, requirements());
    expect(settled).toMatchObject({
      success: true,
      payer: first.account.address,
      amount: depositAmount.toString(),
    });
    expect(settled.extra).toMatchObject({
      channelState: { balance: depositAmount.toString(), totalClaimed: "0" },
    });
    await charged();

    expect(await read<readonly bigint[]>("channels", [channelId])).toEqual([depositAmount, 0n]);
    expect(await tokenBalance(first.account.address)).toBe(payerBefore - depositAmount);
    expect(await tokenBalance(batchSettlementAddress)).toBe(depositAmount);
    expect(await tokenBalance(erc3009DepositCollectorAddress)).toBe(0n);
  });

  it("does not take the same deposit authorization twice", async () => {
    // Rebuilt from the client's storage-free view: the same signed deposit submitted again.
    const again = await newPayer("replay");
    const { envelope: deposit } = await again.pay();
    expect((await facilitator.settle(deposit, requirements())).success).toBe(true);
    const replay = await facilitator.settle(deposit, requirements());
    expect(replay).toMatchObject({
      success: false,
      errorReason: "invalid_batch_settlement_evm_deposit_simulation_failed",
    });
  });

  it(`verifies ${payments - 1} further vouchers, each cumulative, none on chain`, async () => {
    const first = await depositedPayer("vouchers");
    const blockBefore = await publicClient.getBlockNumber();
    const vouchers = await payVouchers(first, payments - 1);
    expect(vouchers).toHaveLength(payments - 1);
    for (const [index, { payload, verified }] of vouchers.entries()) {
      // The deposit was payment 1; voucher `index` is payment index + 2, and covers all of them.
      expect(payload.type).toBe("voucher");
      expect(payload.voucher.maxClaimableAmount).toBe((price * BigInt(index + 2)).toString());
      expect(verified.isValid, verified.invalidReason).toBe(true);
    }
    expect(await publicClient.getBlockNumber()).toBe(blockBefore);
  });

  it("refuses, through the facilitator, a claim above the voucher and a claim with a forged voucher", async () => {
    const { channelId, depositAmount, lastVoucher } = await payerWithVouchers("refused claims");
    const tooMuch = { ...claimOf(lastVoucher), totalClaimed: (price * BigInt(payments) + 1n).toString() };
    const refused = await facilitator.settle(envelope({ type: "claim", claims: [tooMuch] }), requirements());
    expect(refused).toMatchObject({
      success: false,
      errorReason: "invalid_batch_settlement_evm_claim_simulation_failed",
    });

    const stranger = privateKeyToAccount(keccak256(stringToHex("x402 channels stranger")));
    const forged = await signVoucher(stranger, channelId, (price * BigInt(payments)).toString(), net);
    const forgedClaim = { ...claimOf(lastVoucher), signature: forged.signature };
    const refusedForged = await facilitator.settle(
      envelope({ type: "claim", claims: [forgedClaim] }),
      requirements(),
    );
    expect(refusedForged).toMatchObject({
      success: false,
      errorReason: "invalid_batch_settlement_evm_claim_simulation_failed",
    });
    expect(await read<readonly bigint[]>("channels", [channelId])).toEqual([depositAmount, 0n]);
  });

  it(`claims the last of ${payments} vouchers in one claimWithSignature, then settles it to the receiver`, async () => {
    const { channelId, depositAmount, lastVoucher } = await payerWithVouchers("claim");
    const receiverBefore = await tokenBalance(receiver);
    const claimed = await facilitator.settle(
      envelope({ type: "claim", claims: [claimOf(lastVoucher)] }),
      requirements(),
    );
    expect(claimed, claimed.errorMessage).toMatchObject({ success: true });
    const total = price * BigInt(payments);
    expect(await read<readonly bigint[]>("channels", [channelId])).toEqual([depositAmount, total]);
    expect(await tokenBalance(receiver)).toBe(receiverBefore);

    const swept = await facilitator.settle(
      envelope({ type: "settle", receiver, token: testUsd }),
      requirements(),
    );
    expect(swept, swept.errorMessage).toMatchObject({ success: true, amount: total.toString() });
    expect(await tokenBalance(receiver)).toBe(receiverBefore + total);
    expect(await read<readonly bigint[]>("receivers", [receiver, testUsd])).toEqual([total, total]);

    const nothing = await facilitator.settle(
      envelope({ type: "settle", receiver, token: testUsd }),
      requirements(),
    );
    expect(nothing).toMatchObject({
      success: false,
      errorReason: "invalid_batch_settlement_evm_nothing_to_settle",
    });
  });

  it("refuses a voucher above the channel's balance", async () => {
    const first = await payerAfterSettle("over balance");
    const { channelId, depositAmount, lastVoucher } = first;
    const over = await signVoucher(first.account, channelId, (depositAmount + 1n).toString(), net);
    const verified = await facilitator.verify(
      envelope({ type: "voucher", channelConfig: lastVoucher.channelConfig, voucher: over }),
      requirements(),
    );
    expect(verified).toMatchObject({
      isValid: false,
      invalidReason: "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    });
  });

  it("refunds the unclaimed rest to the payer, claiming the outstanding voucher first in one multicall", async () => {
    const first = await payerAfterSettle("refund");
    const { channelId, depositAmount } = first;
    const { envelope: voucher, payload, charged } = await first.pay();
    expect((await facilitator.verify(voucher, requirements())).isValid).toBe(true);
    await charged();
    const charges = price * BigInt(payments + 1);
    const refundVoucher = await signVoucher(first.account, channelId, charges.toString(), net);
    const payerBefore = await tokenBalance(first.account.address);
    const refunded = await facilitator.settle(
      envelope({
        type: "refund",
        channelConfig: payload.channelConfig,
        voucher: refundVoucher,
        amount: depositAmount.toString(),
        refundNonce: "0",
        claims: [claimOf(payload)],
      }),
      requirements(),
    );
    expect(refunded, refunded.errorMessage).toMatchObject({ success: true });
    const rest = depositAmount - charges;
    expect(refunded.amount).toBe(rest.toString());
    expect(await tokenBalance(first.account.address)).toBe(payerBefore + rest);
    expect(await read<readonly bigint[]>("channels", [channelId])).toEqual([charges, charges]);
    expect(await read<bigint>("refundNonce", [channelId])).toBe(1n);
    // The claim in the bundle is credited to the receiver, not yet settled.
    expect(await read<readonly bigint[]>("receivers", [receiver, testUsd])).toEqual([
      charges,
      charges - price,
    ]);
    // The next settle pays it out.
    const swept = await facilitator.settle(
      envelope({ type: "settle", receiver, token: testUsd }),
      requirements(),
    );
    expect(swept, swept.errorMessage).toMatchObject({ success: true, amount: price.toString() });
    expect(await read<readonly bigint[]>("receivers", [receiver, testUsd])).toEqual([charges, charges]);
  });

  it("claims one voucher from each of five payers in one claimWithSignature and pays the receiver in one settle", async () => {
    const payers = await Promise.all(Array.from({ length: 5 }, (_, i) => newPayer(`many ${i}`)));
    const claims = [];
    for (const payer of payers) {
      const { envelope: deposit, payload } = await payer.pay();
      const settled = await facilitator.settle(deposit, requirements());
      expect(settled, settled.errorMessage).toMatchObject({ success: true });
      claims.push(claimOf(payload));
    }
    const receiverBefore = await tokenBalance(receiver);
    const [claimedBefore, settledBefore] = await read<readonly bigint[]>("receivers", [receiver, testUsd]);
    // The chain is as deployed (each test starts from its snapshot): nothing claimed before is left unpaid.
    expect(claimedBefore).toBe(settledBefore);
    const claimed = await facilitator.settle(envelope({ type: "claim", claims }), requirements());
    expect(claimed, claimed.errorMessage).toMatchObject({ success: true });
    for (const claim of claims) {
      const id = await read<Hex>("getChannelId", [claim.voucher.channel]);
      expect(await read<readonly bigint[]>("channels", [id])).toEqual([minDeposit, price]);
    }
    const swept = await facilitator.settle(
      envelope({ type: "settle", receiver, token: testUsd }),
      requirements(),
    );
    expect(swept).toMatchObject({ success: true, amount: (price * 5n).toString() });
    expect(await tokenBalance(receiver)).toBe(receiverBefore + price * 5n);
  });
});
