// The gas a payout really costs is booked: the receipt's gas used × effective gas price leaves the EVM rail's
// clearing account in the native token (what the hot wallet holds), through the rail's fee account, and the payer
// is charged it in the payment's asset at the market's rate, within its fee hold; a payout that fails releases the
// hold. Against the embedded Hardhat chain, through the HTTP API.
import type { Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets, divCeil, formatAmount } from "../../core/index.ts";
import { getRailAccount, getTenantAccount } from "../../gateway/accounts/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { transferCodes } from "../../gateway/ledger/index.ts";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

async function railAccountId(
  kind: "clearing" | "fee" | "capital",
  asset: typeof assets.ETH | typeof assets.USDC,
) {
  const account = await getRailAccount(gw.app.db, { kind, rail: "evm", asset });
  if (account === null) throw new Error(`no ${kind} account for evm in ${asset.code}`);
  return account.ledgerAccountId;
}

async function customer() {
  const record = await getTenantAccount(gw.app.db, {
    tenantId: gw.app.demo!.tenantId,
    id: "acct_demo_customer",
  });
  return gw.ledgerAccount(record!.ledgerAccountId);
}

describe("gas booked on an EVM payout", () => {
  it("books the receipt's gas out of the native clearing account and charges the payer within its fee hold", async () => {
    const wallet = gw.chain.walletClient.account.address;
    const payee = gw.chain.accounts[6]!.address;
    const nativeBefore = await gw.chain.publicClient.getBalance({ address: wallet });
    const clearingBefore = await gw.ledgerAccount(await railAccountId("clearing", assets.ETH));
    const payerBefore = await customer();

    const response = await gw.call("POST", "/v1/payments", {
      amount: "5",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: payee },
    });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ status: "succeeded", rail: "evm" });
    const [attempt] = response.body.attempts;
    const txHash = (attempt.evidence as { tx_hash: Hex }).tx_hash;

    // What the chain says the wallet paid: the receipt's gas, and nothing else left the wallet in the native token.
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
    const wei = receipt.gasUsed * receipt.effectiveGasPrice;
    expect(wei).toBeGreaterThan(0n);
    expect(nativeBefore - (await gw.chain.publicClient.getBalance({ address: wallet }))).toBe(wei);
    const gwei = divCeil(wei, 1_000_000_000n);

    // The gas leaves the native clearing account through the rail's fee account, with the receipt's figures.
    const [paid] = await gw.app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "native-fee-paid")]);
    expect(paid).toMatchObject({
      amount: gwei,
      ledger: assets.ETH.ledger,
      code: transferCodes.payments.feePaid,
      debitAccountId: await railAccountId("fee", assets.ETH),
      creditAccountId: await railAccountId("clearing", assets.ETH),
    });
    expect(paid?.evidence?.detail).toMatchObject({
      gasUsed: receipt.gasUsed.toString(),
      effectiveGasPrice: receipt.effectiveGasPrice.toString(),
      wei: wei.toString(),
    });
    const clearingAfter = await gw.ledgerAccount(await railAccountId("clearing", assets.ETH));
    expect(clearingAfter.creditsPosted - clearingBefore.creditsPosted).toBe(gwei);
    // The attempt says what it paid in gas, as booked: its fee is the rail's own (0 USDC), its network fee the gas. The
    // answer and a read of the payment alike (before, only the ledger showed the gas).
    const networkFee = { asset: "ETH", amount: formatAmount(gwei, assets.ETH) };
    expect(attempt).toMatchObject({ fee: "0.000000", network_fee: networkFee });
    const read = await gw.call("GET", `/v1/payments/${response.body.id}`);
    expect(read.body.attempts[0]).toMatchObject({ fee: "0.000000", network_fee: networkFee });

    // The payer is charged the gas at $3,000 an ETH (3 µUSD a gwei; USDC's minor unit is 1 µUSD), at most its hold.
    const [hold] = await gw.app.ledger.lookupTransfers([
      derivedLedgerId(derivedLedgerId(attempt.id, "reserve").toString(), "fee-hold"),
    ]);
    expect(hold?.amount).toBeGreaterThan(0n);
    const [charged] = await gw.app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fee-post")]);
    const expected = gwei * 3n < hold!.amount ? gwei * 3n : hold!.amount;
    expect(charged?.amount).toBe(expected);
    expect(charged?.creditAccountId).toBe(await railAccountId("fee", assets.USDC));
    const payerAfter = await customer();
    expect(payerAfter.debitsPosted - payerBefore.debitsPosted).toBe(5_000_000n + expected);
    expect(payerAfter.debitsPending).toBe(payerBefore.debitsPending); // the hold's rest is released
  });

  it("the hot wallet's gas was booked as the operator's capital when the gateway first saw it", async () => {
    const capital = await gw.ledgerAccount(await railAccountId("capital", assets.ETH));
    expect(capital.creditsPosted).toBeGreaterThan(0n);
    const clearing = await gw.ledgerAccount(await railAccountId("clearing", assets.ETH));
    expect(clearing.debitsPosted).toBe(capital.creditsPosted);
  });

  it("a payout that fails releases its fee hold with its reservation, and books no gas", async () => {
    const payerBefore = await customer();
    const response = await gw.call("POST", "/v1/payments", {
      amount: "1",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_split", split_id: `0x${"ab".repeat(32)}` },
    });
    expect(response.status).toBe(402);
    expect(response.body.error.payment).toMatchObject({ status: "failed" });
    const [attempt] = response.body.error.payment.attempts;
    expect(attempt.network_fee).toBeNull();
    const [voided] = await gw.app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "fee-hold-void")]);
    expect(voided).toBeDefined();
    const [paid] = await gw.app.ledger.lookupTransfers([derivedLedgerId(attempt.id, "native-fee-paid")]);
    expect(paid).toBeUndefined();
    const payerAfter = await customer();
    expect(payerAfter.debitsPosted).toBe(payerBefore.debitsPosted);
    expect(payerAfter.debitsPending).toBe(payerBefore.debitsPending);
  });
});
