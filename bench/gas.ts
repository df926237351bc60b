// `npm run bench -- gas`: gas used by the RevenueSplitter calls the EVM rail makes, measured from receipts
// on Hardhat's in-process chain (EDR). "Warm" means what a running gateway sees: the split, its totals and
// its recipients' balances already exist, payees already hold the token, and allowances are unlimited.
// gas_per_recipient = transaction gas / recipients; gas_per_payment = gas of all settleBatch calls / payments.
//
// x402-single / x402-batch-N: x402 `exact` payments (EIP-3009 transferWithAuthorization, each from its own payer
// who already holds the token, each with a fresh random nonce, all to the hot wallet, which holds the token too),
// one transaction per payment or N per X402BatchSettler.settle; gas_per_payment = the transaction's gas (21,000
// base and calldata included) / payments. x402-batch-100-one-payer: the same with one payer for all 100.
// The floor per payment on an unmodified EIP-3009 token (USDC, TestUSD) is not 25,000: each authorization writes
// a fresh nonce slot (2,100 cold + 20,000 zero→non-zero = 22,100) and recovers a signature (ecrecover 3,000):
// 25,100 before the payer's balance (cold read + write, 5,000), the token's two logs (AuthorizationUsed ≈ 1,100,
// Transfer ≈ 1,750), the item's calldata (145 packed bytes ≈ 2,200) and the call itself (≈ 1,000).
//
// x402-channel-*: x402's `batch-settlement` scheme on X402ChannelEscrow at its canonical address, every transaction
// sent by the official @x402/evm facilitator from payloads the official client signed (test/support/x402-channels.ts
// places the contracts). x402-channel-deposit: a payer's first deposit (ERC-3009 receiveWithAuthorization through the
// collector; the escrow already holds the token). x402-channel-claim-1: one claimWithSignature of the last voucher
// of 100 payments in one channel; x402-channel-claim-100: one claimWithSignature of one voucher from each of 100
// channels (100 payers). x402-channel-settle: settle(receiver, token), one transfer. gas_per_payment:
// x402-channel-100 = (deposit + claim-1 + settle) / 100 for 100 payments from one payer; x402-channel-100-payers =
// (100 deposits + claim-100 + settle) / 100 for 100 payers paying once each.
import { x402Facilitator } from "@x402/core/facilitator";
import type { PaymentPayload, PaymentRequirements, SettleResponse } from "@x402/core/types";
import { toClientEvmSigner, toFacilitatorEvmSigner } from "@x402/evm";
import {
  BatchSettlementEvmScheme as BatchClient,
  InMemoryClientChannelStorage,
  updateChannelFromSettle,
} from "@x402/evm/batch-settlement/client";
import { BatchSettlementEvmScheme as BatchFacilitator } from "@x402/evm/batch-settlement/facilitator";
import { network } from "hardhat";
import {
  type Address,
  createWalletClient,
  custom,
  type EIP1193Provider,
  type Hex,
  keccak256,
  maxUint256,
  type PublicClient,
  parseSignature,
  publicActions,
  stringToHex,
} from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import { hardhatMnemonic } from "../adapters/evm/dev-chain.ts";
import {
  authorizationNonceOf,
  canonicalSplit,
  deployContracts,
  receiveWithAuthorizationTypedData,
  referenceFromId,
  revenueSplitterAbi,
  settleBatchPayeesMax,
  splitIdOf,
  testUsdAbi,
  testUsdDefaults,
} from "../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../adapters/evm/typed-data.ts";
import {
  packAuthorizations,
  type TransferAuthorization,
  x402BatchSettlerAbi,
} from "../adapters/evm/x402-batch.ts";
import { basisPointsTotal } from "../core/index.ts";
import { installX402Channels } from "../test/support/x402-channels.ts";
import type { BenchResult, BenchRow } from "./report.ts";

const distributeRecipientCounts = [2, 5, 10, 50] as const;
const settleBatchPayeeCounts = [10, 100, 500] as const;
const nettedPayments = 10_000;
const nettedPayees = 100;
const nettedPaymentUnitsMax = 10_000n; // one cent of a 6-decimal dollar
const prngSeed = 0x5eed_1234;
const x402BatchPayments = 100;
const x402PaymentUnits = 1_000n; // a tenth of a cent of a 6-decimal dollar

/** Deterministic addresses that hold no key: recipients and payees only receive. */
function addressAt(group: number, index: number): Address {
  return `0x${group.toString(16).padStart(8, "0")}${(index + 1).toString(16).padStart(32, "0")}` as Address;
}

/** Shares that sum to 10,000: equal, the remainder on the first. */
function equalShares(count: number): number[] {
  const totalBps = Number(basisPointsTotal);
  const base = Math.floor(totalBps / count);
  const shares = Array.from({ length: count }, () => base);
  shares[0]! += totalBps - base * count;
  return shares;
}

/** mulberry32: a small seeded PRNG, so the netted case is the same on every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export async function run(): Promise<BenchResult> {
  const connection = await network.connect();
  try {
    return await measure(connection);
  } finally {
    await connection.close();
  }
}

type Connection = Awaited<ReturnType<typeof network.connect>>;
type HardhatViem = Connection["viem"];

/**
 * One piece on purpose: each row's receipt is measured on the chain state the rows before it left (the split,
 * its recipients and allowances already there), so the cases run in this order on one chain.
 */
async function measure(connection: Connection): Promise<BenchResult> {
  const viem = connection.viem;
  const publicClient = await viem.getPublicClient();
  const [gateway] = await viem.getWalletClients();
  if (!gateway) throw new Error("bench gas: no wallet client");
  const { testUsd, splitter } = await deployContracts({ walletClient: gateway, publicClient });
  const chainId = await publicClient.getChainId();
  const rows: BenchRow[] = [];

  const send = async (hash: Hex): Promise<bigint> => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`bench gas: transaction ${hash} reverted`);
    return receipt.gasUsed;
  };
  const mint = (to: Address, amount: bigint) =>
    gateway.writeContract({ address: testUsd, abi: testUsdAbi, functionName: "mint", args: [to, amount] });
  const createSplit = async (recipients: readonly Address[], basisPoints: readonly number[]) => {
    await send(
      await gateway.writeContract({
        address: splitter,
        abi: revenueSplitterAbi,
        functionName: "createSplit",
        args: [recipients, basisPoints],
      }),
    );
    return splitIdOf(recipients, basisPoints);
  };
  const pay = (splitId: Hex, amount: bigint, ref: string) =>
    gateway.writeContract({
      address: splitter,
      abi: revenueSplitterAbi,
      functionName: "pay",
      args: [splitId, testUsd, amount, referenceFromId(ref)],
    });
  const distribute = (splitId: Hex, ref: string) =>
    gateway.writeContract({
      address: splitter,
      abi: revenueSplitterAbi,
      functionName: "distribute",
      args: [splitId, testUsd, referenceFromId(ref)],
    });
  const settleBatch = (payees: readonly Address[], amounts: readonly bigint[], ref: string) =>
    gateway.writeContract({
      address: splitter,
      abi: revenueSplitterAbi,
      functionName: "settleBatch",
      args: [testUsd, payees, amounts, referenceFromId(ref)],
    });

  await send(await mint(gateway.account.address, 10n ** 15n));
  await send(
    await gateway.writeContract({
      address: testUsd,
      abi: testUsdAbi,
      functionName: "approve",
      args: [splitter, maxUint256],
    }),
  );

  // pay (warm): the second payment into a split.
  const two = canonicalSplit({ recipients: [addressAt(1, 0), addressAt(1, 1)], basisPoints: [7000, 3000] });
  const twoId = await createSplit(two.recipients, two.basisPoints);
  await send(await pay(twoId, 1_000_000n, "bench_pay_1"));
  rows.push({ case: "pay", gas: Number(await send(await pay(twoId, 1_000_000n, "bench_pay_2"))) });

  // payWithAuthorization: a payer who never sent a transaction signs; the gateway submits (warm split).
  const payer = privateKeyToAccount(`0x${"42".repeat(32)}`);
  await send(await mint(payer.address, 10n ** 12n));
  const domain = {
    name: testUsdDefaults.name,
    version: testUsdDefaults.version,
    chainId,
    verifyingContract: testUsd,
  };
  const ref = referenceFromId("bench_auth_1");
  const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
  const signature = await payer.signTypedData(
    receiveWithAuthorizationTypedData(domain, {
      from: payer.address,
      to: splitter,
      value: 250_000n,
      validAfter: 0n,
      validBefore,
      nonce: authorizationNonceOf(twoId, ref),
    }),
  );
  const { v, r, s } = parseSignature(signature);
  rows.push({
    case: "payWithAuthorization",
    gas: Number(
      await send(
        await gateway.writeContract({
          address: splitter,
          abi: revenueSplitterAbi,
          functionName: "payWithAuthorization",
          args: [twoId, testUsd, payer.address, 250_000n, 0n, validBefore, ref, Number(v), r, s],
        }),
      ),
    ),
  });

  // distribute-N (warm): the second distribution of a split.
  for (const count of distributeRecipientCounts) {
    const split = canonicalSplit({
      recipients: Array.from({ length: count }, (_, i) => addressAt(2 + count, i)),
      basisPoints: equalShares(count),
    });
    const splitId = await createSplit(split.recipients, split.basisPoints);
    await send(await pay(splitId, 12_345_678n, `bench_d${count}_p1`));
    await send(await distribute(splitId, `bench_d${count}_d1`));
    await send(await pay(splitId, 98_765_432n, `bench_d${count}_p2`));
    const gas = Number(await send(await distribute(splitId, `bench_d${count}_d2`)));
    rows.push({ case: `distribute-${count}`, gas, gas_per_recipient: Math.round(gas / count) });
  }

  // settleBatch-N (warm): payees already hold the token.
  for (const count of settleBatchPayeeCounts) {
    const payees = Array.from({ length: count }, (_, i) => addressAt(1000 + count, i));
    for (const payee of payees) await mint(payee, 1n);
    await send(await mint(gateway.account.address, 1n));
    const amounts = payees.map((_, i) => 1_000n + BigInt(i));
    const gas = Number(await send(await settleBatch(payees, amounts, `bench_s${count}`)));
    rows.push({ case: `settleBatch-${count}`, gas });
  }

  // netted-10000x100: 10,000 micro-payments of 1..10,000 units to 100 payees, netted per payee off-chain,
  // settled in as few settleBatch calls as the payee limit allows.
  const random = prng(prngSeed);
  const nettedPayeeAddresses = Array.from({ length: nettedPayees }, (_, i) => addressAt(5000, i));
  for (const payee of nettedPayeeAddresses) await mint(payee, 1n);
  await send(await mint(gateway.account.address, 1n));
  const owed = new Map<Address, bigint>();
  for (let i = 0; i < nettedPayments; i += 1) {
    const payee = nettedPayeeAddresses[Math.floor(random() * nettedPayees)]!;
    const amount = 1n + BigInt(Math.floor(random() * Number(nettedPaymentUnitsMax)));
    owed.set(payee, (owed.get(payee) ?? 0n) + amount);
  }
  const entries = [...owed.entries()];
  let nettedGas = 0n;
  for (let start = 0; start < entries.length; start += settleBatchPayeesMax) {
    const chunk = entries.slice(start, start + settleBatchPayeesMax);
    nettedGas += await send(
      await settleBatch(
        chunk.map(([payee]) => payee),
        chunk.map(([, amount]) => amount),
        `bench_net_${start}`,
      ),
    );
  }
  rows.push({
    case: `netted-${nettedPayments}x${nettedPayees}`,
    gas: Number(nettedGas),
    gas_per_payment: Number(nettedGas) / nettedPayments,
  });

  rows.push(...(await measureX402(viem, { testUsd, chainId, send, mint })));
  rows.push(...(await measureX402Channels(connection, { testUsd, chainId, send, mint })));
  return { benchmark: "gas", rows };
}

/** The chain the x402 cases pay on: TestUSD, a send that answers the gas used, and a mint. */
type X402BenchChain = {
  testUsd: Address;
  chainId: number;
  send: (hash: Hex) => Promise<bigint>;
  mint: (to: Address, amount: bigint) => Promise<Hex>;
};

/** x402-single, x402-batch-100 and x402-batch-100-one-payer (see the header). */
async function measureX402(viem: HardhatViem, chain: X402BenchChain): Promise<BenchRow[]> {
  const [gateway] = await viem.getWalletClients();
  if (!gateway) throw new Error("bench gas: no wallet client");
  const { testUsd, send, mint } = chain;
  const settler = await viem.deployContract("X402BatchSettler");
  const domain = {
    name: testUsdDefaults.name,
    version: testUsdDefaults.version,
    chainId: chain.chainId,
    verifyingContract: testUsd,
  };
  const payers = Array.from({ length: x402BatchPayments + 1 }, (_, i) =>
    privateKeyToAccount(keccak256(stringToHex(`bench x402 payer ${i}`))),
  );
  for (const payer of payers) await send(await mint(payer.address, 10n ** 9n));
  const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
  const authorize = async (
    payer: (typeof payers)[number],
    nonceText: string,
  ): Promise<TransferAuthorization> => {
    const message = {
      from: payer.address,
      to: gateway.account.address,
      value: x402PaymentUnits,
      validAfter: 0n,
      validBefore,
      nonce: keccak256(stringToHex(nonceText)),
    };
    const signature = await payer.signTypedData(transferWithAuthorizationTypedData(domain, message));
    return { ...message, signature };
  };
  const settle = async (items: TransferAuthorization[]) =>
    Number(
      await send(
        await gateway.writeContract({
          address: settler.address,
          abi: x402BatchSettlerAbi,
          functionName: "settle",
          args: [testUsd, gateway.account.address, packAuthorizations(items)],
        }),
      ),
    );
  const rows: BenchRow[] = [];

  const single = await authorize(payers[x402BatchPayments]!, "bench x402 single");
  const { v, r, s } = parseSignature(single.signature);
  const singleGas = Number(
    await send(
      await gateway.writeContract({
        address: testUsd,
        abi: testUsdAbi,
        functionName: "transferWithAuthorization",
        args: [
          single.from,
          gateway.account.address,
          single.value,
          single.validAfter,
          single.validBefore,
          single.nonce,
          Number(v),
          r,
          s,
        ],
      }),
    ),
  );
  rows.push({ case: "x402-single", gas: singleGas, gas_per_payment: singleGas });

  const many = await Promise.all(
    payers.slice(0, x402BatchPayments).map((payer, i) => authorize(payer, `bench x402 batch ${i}`)),
  );
  const batchGas = await settle(many);
  rows.push({
    case: `x402-batch-${x402BatchPayments}`,
    gas: batchGas,
    gas_per_payment: Math.round(batchGas / x402BatchPayments),
  });

  const onePayer = await Promise.all(
    Array.from({ length: x402BatchPayments }, (_, i) => authorize(payers[0]!, `bench x402 one payer ${i}`)),
  );
  const onePayerGas = await settle(onePayer);
  rows.push({
    case: `x402-batch-${x402BatchPayments}-one-payer`,
    gas: onePayerGas,
    gas_per_payment: Math.round(onePayerGas / x402BatchPayments),
  });
  return rows;
}

/** x402-channel-* (see the header): the official facilitator's transactions, their gas from the receipts. */
async function measureX402Channels(connection: Connection, chain: X402BenchChain): Promise<BenchRow[]> {
  const { testUsd, send, mint } = chain;
  const publicClient = (await connection.viem.getPublicClient()) as unknown as PublicClient;
  const [gateway] = await connection.viem.getWalletClients();
  if (!gateway) throw new Error("bench gas: no wallet client");
  await installX402Channels({
    publicClient,
    walletClient: gateway as never,
    setCode: (address, code) => connection.networkHelpers.setCode(address, code),
  });
  const net = `eip155:${chain.chainId}` as const;
  const receiver = privateKeyToAccount(keccak256(stringToHex("bench x402 channel receiver"))).address;
  const authorizer = privateKeyToAccount(keccak256(stringToHex("bench x402 channel authorizer")));
  const submitter = createWalletClient({
    account: mnemonicToAccount(hardhatMnemonic, { addressIndex: 7 }),
    transport: custom(connection.provider as unknown as EIP1193Provider),
    chain: gateway.chain,
  }).extend(publicActions);
  const facilitator = new x402Facilitator().register(
    net,
    new BatchFacilitator(
      toFacilitatorEvmSigner({ ...submitter, address: submitter.account.address } as never),
      authorizer,
    ),
  );
  const requirements: PaymentRequirements = {
    scheme: "batch-settlement",
    network: net,
    amount: x402PaymentUnits.toString(),
    asset: testUsd,
    payTo: receiver,
    maxTimeoutSeconds: 3600,
    extra: {
      name: testUsdDefaults.name,
      version: testUsdDefaults.version,
      receiverAuthorizer: authorizer.address,
      withdrawDelay: 900,
      minDeposit: (x402PaymentUnits * BigInt(x402BatchPayments)).toString(),
    },
  };
  const envelope = (payload: unknown): PaymentPayload =>
    ({ x402Version: 2, accepted: requirements, payload }) as PaymentPayload;
  type Signed = {
    type: string;
    channelConfig: unknown;
    voucher: { channelId: Hex; maxClaimableAmount: string; signature: Hex };
    deposit?: { amount: string };
  };
  const claimOf = (payload: Signed) => ({
    voucher: { channel: payload.channelConfig, maxClaimableAmount: payload.voucher.maxClaimableAmount },
    signature: payload.voucher.signature,
    totalClaimed: payload.voucher.maxClaimableAmount,
  });
  const gasOf = async (what: string, response: Promise<SettleResponse>): Promise<number> => {
    const settled = await response;
    if (!settled.success)
      throw new Error(`bench gas: ${what}: ${settled.errorReason} ${settled.errorMessage ?? ""}`);
    return Number(await send(settled.transaction as Hex));
  };
  /** A payer holding TestUSD with the official client; its first payload is a deposit, the next ones vouchers. */
  const newPayer = async (label: string) => {
    const account = privateKeyToAccount(keccak256(stringToHex(`bench x402 channel payer ${label}`)));
    await send(await mint(account.address, 10n ** 9n));
    const storage = new InMemoryClientChannelStorage();
    const client = new BatchClient(toClientEvmSigner(account), { storage });
    // Each payment is then booked as charged in the client's storage, as its PAYMENT-RESPONSE hook would.
    return async (): Promise<Signed> => {
      const payload = (await client.createPaymentPayload(2, requirements)).payload as Signed;
      await updateChannelFromSettle(storage, {
        server: { chargedAmount: x402PaymentUnits.toString() },
        local: {
          channelId: payload.voucher.channelId,
          requestAmount: x402PaymentUnits.toString(),
          ...(payload.deposit ? { depositAmount: payload.deposit.amount } : {}),
        },
      });
      return payload;
    };
  };
  const deposit = (payload: Signed) => gasOf("deposit", facilitator.settle(envelope(payload), requirements));
  const claim = (payloads: Signed[]) =>
    gasOf(
      "claim",
      facilitator.settle(envelope({ type: "claim", claims: payloads.map(claimOf) }), requirements),
    );
  const settle = () =>
    gasOf("settle", facilitator.settle(envelope({ type: "settle", receiver, token: testUsd }), requirements));

  // Warm: the escrow already holds the token and the receiver has been paid once.
  const warmUp = await newPayer("warm-up");
  const warmUpDeposit = await warmUp();
  await deposit(warmUpDeposit);
  await claim([warmUpDeposit]);
  await settle();
  const rows: BenchRow[] = [];

  // One payer, 100 payments: the deposit carries the first voucher, 99 more are signed off chain.
  const onePayer = await newPayer("one");
  const first = await onePayer();
  const depositGas = await deposit(first);
  let last = first;
  for (let i = 1; i < x402BatchPayments; i += 1) last = await onePayer();
  if (
    last.type !== "voucher" ||
    BigInt(last.voucher.maxClaimableAmount) !== x402PaymentUnits * BigInt(x402BatchPayments)
  ) {
    throw new Error("bench gas: the 100th payment is not a voucher for 100 payments");
  }
  const claimOneGas = await claim([last]);
  const settleGas = await settle();
  rows.push({ case: "x402-channel-deposit", gas: depositGas });
  rows.push({ case: "x402-channel-claim-1", gas: claimOneGas });
  rows.push({ case: "x402-channel-settle", gas: settleGas });
  const onePayerGas = depositGas + claimOneGas + settleGas;
  rows.push({
    case: `x402-channel-${x402BatchPayments}`,
    gas: onePayerGas,
    gas_per_payment: Math.round(onePayerGas / x402BatchPayments),
  });

  // 100 payers paying once each: 100 deposits, one claim of 100 channels, one settle.
  const firsts: Signed[] = [];
  let depositsGas = 0;
  for (let i = 0; i < x402BatchPayments; i += 1) {
    const payment = await (await newPayer(`many ${i}`))();
    depositsGas += await deposit(payment);
    firsts.push(payment);
  }
  const claimManyGas = await claim(firsts);
  const settleManyGas = await settle();
  rows.push({ case: `x402-channel-claim-${x402BatchPayments}`, gas: claimManyGas });
  const manyGas = depositsGas + claimManyGas + settleManyGas;
  rows.push({
    case: `x402-channel-${x402BatchPayments}-payers`,
    gas: manyGas,
    gas_per_payment: Math.round(manyGas / x402BatchPayments),
  });
  return rows;
}
