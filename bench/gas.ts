// `npm run bench -- gas`: gas used by the RevenueSplitter calls the EVM rail makes, measured from receipts
// on Hardhat's in-process chain (EDR). "Warm" means what a running gateway sees: the split, its totals and
// its recipients' balances already exist, payees already hold the token, and allowances are unlimited.
// gas_per_recipient = transaction gas / recipients; gas_per_payment = gas of all settleBatch calls / payments.
import { network } from "hardhat";
import { type Address, type Hex, maxUint256, parseSignature } from "viem";
import { privateKeyToAccount } from "viem/accounts";
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
import { basisPointsTotal } from "../core/index.ts";
import type { BenchResult, BenchRow } from "./report.ts";

const distributeRecipientCounts = [2, 5, 10, 50] as const;
const settleBatchPayeeCounts = [10, 100, 500] as const;
const nettedPayments = 10_000;
const nettedPayees = 100;
const nettedPaymentUnitsMax = 10_000n; // one cent of a 6-decimal dollar
const prngSeed = 0x5eed_1234;

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
    return await measure(connection.viem);
  } finally {
    await connection.close();
  }
}

type HardhatViem = Awaited<ReturnType<typeof network.connect>>["viem"];

/**
 * One piece on purpose: each row's receipt is measured on the chain state the rows before it left (the split,
 * its recipients and allowances already there), so the cases run in this order on one chain.
 */
async function measure(viem: HardhatViem): Promise<BenchResult> {
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

  return { benchmark: "gas", rows };
}
