// A netted batch the token refuses for some payees says which (the Rail contract's PayoutBatchOutcome.refused), so
// that netting can pay the others without them; a batch refused as a whole (the wallet short, the token refusing
// the wallet itself, gas above the cap) blames no payee. Nothing is sent to find out. The token is TestUSD with
// USDC's blacklist (test/support/blacklisting-token.ts).
import type { Address } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvmRail, referenceFromId } from "../../adapters/evm/index.ts";
import type { PayoutBatch } from "../../core/index.ts";
import { installBlacklist } from "../support/blacklisting-token.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

const good = [
  "0x7100000000000000000000000000000000000001",
  "0x7100000000000000000000000000000000000002",
  "0x7100000000000000000000000000000000000003",
] as const;
const blacklisted = [
  "0x7200000000000000000000000000000000000001",
  "0x7200000000000000000000000000000000000002",
] as const;

let token: Awaited<ReturnType<typeof installBlacklist>>;

beforeAll(async () => {
  token = await installBlacklist(gw.chain);
  for (const address of blacklisted) await token.blacklist(address);
});

function payoutBatchOf(rail: EvmRail): NonNullable<EvmRail["payoutBatch"]> {
  if (rail.payoutBatch === undefined) throw new Error("the EVM rail pays netted batches");
  return rail.payoutBatch;
}

const batchOf = (name: string, payouts: ReadonlyArray<readonly [Address, bigint]>): PayoutBatch => ({
  reference: referenceFromId(name),
  payouts: payouts.map(([address, amount]) => ({ destination: { kind: "evm_address", address }, amount })),
});

const balances = () => Promise.all([...good, ...blacklisted].map((address) => gw.tokenBalance(address)));

describe("which rail pays netted batches", () => {
  it("only a rail with a RevenueSplitter offers them: without one, payouts netted to it could never be sent", () => {
    expect(anotherProcessRail(gw).payoutBatch).toBeTypeOf("function");
    expect(anotherProcessRail(gw, { splitter: undefined }).payoutBatch).toBeUndefined();
  });
});

describe("a netted batch the token refuses", () => {
  it("names the payees it is refused for, by index, and pays nobody", async () => {
    const before = await balances();
    const outcome = await payoutBatchOf(gw.rail)(
      batchOf("nb_refusals_named", [
        [good[0], 1_000n],
        [blacklisted[0], 2_000n],
        [good[1], 3_000n],
        [good[2], 4_000n],
        [blacklisted[1], 5_000n],
      ]),
    );
    expect(outcome).toEqual({
      status: "failed",
      code: "rejected",
      message: "Blacklistable: account is blacklisted",
      refused: [
        {
          index: 1,
          code: "rejected",
          message: `a payout to ${blacklisted[0]} alone reverts: Blacklistable: account is blacklisted`,
        },
        {
          index: 4,
          code: "rejected",
          message: `a payout to ${blacklisted[1]} alone reverts: Blacklistable: account is blacklisted`,
        },
      ],
    });
    expect(await balances()).toEqual(before);
  });

  it("the same batch without them goes through", async () => {
    const before = await balances();
    const outcome = await payoutBatchOf(gw.rail)(
      batchOf("nb_refusals_rest", [
        [good[0], 1_000n],
        [good[1], 3_000n],
        [good[2], 4_000n],
      ]),
    );
    expect(outcome).toMatchObject({ status: "succeeded" });
    const after = await balances();
    expect(after.map((balance, i) => balance - before[i]!)).toEqual([1_000n, 3_000n, 4_000n, 0n, 0n]);
  });

  it("blames no payee when the wallet cannot pay the batch, though it could pay each payee alone", async () => {
    const wallet = await gw.tokenBalance(gw.chain.walletClient.account.address);
    const half = wallet / 2n + 1n;
    const outcome = await payoutBatchOf(gw.rail)(
      batchOf("nb_refusals_short", [
        [good[0], half],
        [good[1], half],
      ]),
    );
    expect(outcome).toMatchObject({ status: "failed", code: "insufficient_liquidity" });
    expect(outcome).not.toHaveProperty("refused");
  });

  it("blames no payee when the token refuses the gateway's own wallet too", async () => {
    const wallet = gw.chain.walletClient.account.address;
    await token.blacklist(wallet);
    try {
      const outcome = await payoutBatchOf(gw.rail)(
        batchOf("nb_refusals_wallet", [
          [good[0], 1_000n],
          [blacklisted[0], 2_000n],
        ]),
      );
      expect(outcome).toMatchObject({ status: "failed", code: "rejected" });
      expect(outcome).not.toHaveProperty("refused");
    } finally {
      await token.unBlacklist(wallet);
    }
  });

  it("blames no payee when gas is above the cap: nothing was run", async () => {
    const capped = anotherProcessRail(gw, { gas: { priorityFeeWei: 1n, maxFeeWei: 1n } });
    const outcome = await payoutBatchOf(capped)(batchOf("nb_refusals_capped", [[blacklisted[0], 2_000n]]));
    expect(outcome).toMatchObject({ status: "failed", code: "fee_above_max" });
    expect(outcome).not.toHaveProperty("refused");
  });
});
