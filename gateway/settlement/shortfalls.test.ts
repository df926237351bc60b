// What a give-back collects of the shortfalls it finds: oldest reversal first, never more than the account gets back,
// one amount per account, none of the reversal being given back, and nothing when nothing is owed. The SQL that
// records it is exercised on the real databases (settlement.test.ts, test/fiat/reversal-shortfall.test.ts).
import { describe, expect, it } from "vitest";
import { transferCodes } from "../ledger/index.ts";
import { collectShortfalls, legShortfalls, shortfallCollectionLedgerId } from "./shortfalls.ts";

const seller = { accountId: "acct_seller", ledgerAccountId: 11n };
const payee = { accountId: "acct_payee", ledgerAccountId: 12n };
const base = {
  invoiceId: "inv_1",
  source: "rfd_1",
  clearingLedgerAccountId: 99n,
  ledger: 7,
  evidence: { rail: "fiat", reference: "re_1" },
};

describe("collectShortfalls", () => {
  it("takes the oldest shortfall first, each at most what is left of what the account gets back", () => {
    const collection = collectShortfalls({
      ...base,
      givenBack: [{ ...seller, amount: 1_500n }],
      outstanding: [
        { reversalKey: "dispute:old", accountId: seller.accountId, outstanding: 1_000n },
        { reversalKey: "dispute:new", accountId: seller.accountId, outstanding: 800n },
        { reversalKey: "dispute:new", accountId: payee.accountId, outstanding: 300n },
      ],
    });
    expect(collection.takes.map(({ reversalKey, amount }) => [reversalKey, amount])).toEqual([
      ["dispute:old", 1_000n],
      ["dispute:new", 500n],
    ]);
    expect(collection.readAt).toEqual([{ accountId: seller.accountId, outstanding: 1_800n }]);
    expect(collection.members[0]).toMatchObject({
      kind: "move",
      posting: {
        debitAccountId: 11n,
        creditAccountId: 99n,
        amount: 1_000n,
        ledger: 7,
        code: transferCodes.invoices.shortfallCollected,
      },
      transfer: {
        id: shortfallCollectionLedgerId("inv_1", "dispute:old", seller.accountId, "rfd_1"),
        evidence: { rail: "fiat", reference: "re_1", detail: { reversal: "dispute:old", source: "rfd_1" } },
      },
    });
  });

  it("counts an account given back to twice as one amount, and leaves out the reversal being given back", () => {
    const collection = collectShortfalls({
      ...base,
      source: "dispute:won",
      givenBack: [
        { ...payee, amount: 200n },
        { ...payee, amount: 300n },
      ],
      outstanding: [
        { reversalKey: "dispute:won", accountId: payee.accountId, outstanding: 900n },
        { reversalKey: "refund:re_2", accountId: payee.accountId, outstanding: 900n },
      ],
      exceptReversal: "dispute:won",
    });
    expect(collection.takes.map(({ reversalKey, amount }) => [reversalKey, amount])).toEqual([
      ["refund:re_2", 500n],
    ]);
    expect(collection.readAt).toEqual([{ accountId: payee.accountId, outstanding: 900n }]);
    expect(collection.exceptReversal).toBe("dispute:won");
  });

  it("collects nothing when nothing is owed: all of it stays on the account", () => {
    const collection = collectShortfalls({
      ...base,
      givenBack: [{ ...seller, amount: 1_000n }],
      outstanding: [],
    });
    expect(collection.takes).toEqual([]);
    expect(collection.members).toEqual([]);
    expect(collection.readAt).toEqual([{ accountId: seller.accountId, outstanding: 0n }]);
  });
});

describe("legShortfalls", () => {
  it("is what each leg asked less what it took, those above zero", () => {
    expect(
      legShortfalls(
        [
          { accountId: payee.accountId, asked: 300n },
          { accountId: seller.accountId, asked: 2_200n },
          { accountId: "acct_other", asked: 0n },
        ],
        [300n, 1_500n, 0n],
      ),
    ).toEqual([{ accountId: seller.accountId, amount: 700n }]);
  });
});
