// The hot wallet's key rotated (the rail restarted with a new key on the same database) while an authorization bound
// before the rotation, its `to` the old wallet, is still to be mined or concluded: the deposit watcher credits its
// invoice from the transfer to the old wallet, and x402's reconciliation judges it by the old wallet, as the invoice
// recorded them when bound (evm migration 0023); a transfer of the bound payer and nonce to an address never ours
// credits nothing. A row bound before the migration (no `to` recorded) is read as the hot wallet of now, and the
// migration fills it in from the signer of the authorization's send.
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Account,
  type Address,
  createWalletClient,
  custom,
  type Hex,
  keccak256,
  stringToHex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EvmRail } from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import { silentLogger } from "../../core/index.ts";
import { splitStatements } from "../../gateway/db/index.ts";
import { applyRailEvent, submitInvoicePayment } from "../../gateway/settlement/index.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { reconcileX402 } from "../../gateway/x402/reconcile.ts";
import { createSingleSettler } from "../../gateway/x402/settle.ts";
import { claim } from "../../gateway/x402/store.ts";
import {
  anotherProcessRail,
  type Gateway,
  mintedPayer,
  signedX402Payment,
  submitCopiedAuthorization,
  x402BatchGateway,
} from "./support.ts";

let gw: Gateway;
let chain: X402Chain;
/** The hot wallet before the rotation: the gateway's own. */
let oldWallet: Address;

beforeAll(async () => {
  ({ gw, chain } = await x402BatchGateway());
  oldWallet = gw.chain.walletClient.account.address;
});
afterAll(async () => {
  await gw?.setAutomine(true);
  await gw?.app.close();
});

/** The wallet the hot wallet's key was rotated to (the same key every run), holding ETH for gas. */
async function rotatedWallet(seed: string) {
  const account = privateKeyToAccount(keccak256(stringToHex(`key rotation test: ${seed}`)));
  await gw.chain.networkHelpers.setBalance(account.address, 10n ** 18n);
  const transport = custom({
    request: (args: { method: string; params?: unknown }) => gw.chain.provider.request(args as never),
  });
  return createWalletClient({ account, chain: gw.chain.chain, transport });
}

/** The rail restarted with the rotated wallet's key, crediting what its deposit watcher finds; started. */
async function railRotatedTo(wallet: Awaited<ReturnType<typeof rotatedWallet>>): Promise<EvmRail> {
  const rotated = anotherProcessRail(gw, {
    walletClient: wallet,
    deposits: {
      factory: gw.chain.contracts.forwarderFactory,
      pollIntervalMs: 3_600_000,
      lateWatchMs: 3_600_000,
      sweepSaltsMax: 50,
    },
  });
  rotated.onEvent((event) =>
    applyRailEvent(
      { settlement: gw.app.settlement, payments: gw.app.payments, logger: silentLogger },
      "evm",
      event,
    ),
  );
  await rotated.start();
  return rotated;
}

type InvoiceBody = { id: string; status: string; received_amount: string | null; payer: string | null };

async function createInvoice(amount: string): Promise<InvoiceBody> {
  const created = await gw.call("POST", "/v1/invoices", {
    account: gw.app.demo!.merchant.id,
    asset: "USDC",
    amount,
  });
  expect(created.status).toBe(201);
  return created.body as InvoiceBody;
}

async function invoice(id: string): Promise<InvoiceBody> {
  const read = await gw.call("GET", `/v1/invoices/${id}`);
  expect(read.status).toBe(200);
  return read.body as InvoiceBody;
}

/** `payer`'s signed transferWithAuthorization of `value` to `to` with `nonce`, valid for an hour. */
async function signTransfer(payer: Account, to: Address, value: bigint, nonce: Hex) {
  const latest = await gw.chain.publicClient.getBlock({ blockTag: "latest" });
  const nowS = BigInt(Math.floor(Date.now() / 1000));
  const message = {
    from: payer.address,
    to,
    value,
    validAfter: 0n,
    validBefore: (latest.timestamp > nowS ? latest.timestamp : nowS) + 3_600n,
    nonce,
  };
  const domain = {
    name: "USD Coin",
    version: "2",
    chainId: gw.chain.chain.id,
    verifyingContract: gw.chain.contracts.testUsd,
  };
  const signature = await payer.signTypedData!(transferWithAuthorizationTypedData(domain, message));
  return { message, signature };
}

/** As the x402 settler submits a payer's transfer authorization, for the invoice made for it (by the rail of now). */
function submitTransfer(invoiceId: string, signed: Awaited<ReturnType<typeof signTransfer>>) {
  return submitInvoicePayment(gw.app.settlement, {
    tenantId: gw.app.demo!.tenantId,
    id: invoiceId,
    fields: {
      method: "transfer",
      from: signed.message.from,
      to: signed.message.to,
      value: signed.message.value.toString(),
      valid_after: signed.message.validAfter.toString(),
      valid_before: signed.message.validBefore.toString(),
      nonce: signed.message.nonce,
      signature: signed.signature,
    },
  });
}

async function bindingOf(invoiceId: string) {
  const [row] = await gw.app.db.query<{ auth_from: string | null; auth_to: string | null }>(
    "SELECT auth_from, auth_to FROM evm_deposits WHERE reference = $1",
    [invoiceId],
  );
  return row ?? null;
}

describe("an authorization bound before the hot wallet's key rotated, mined after", () => {
  it("is credited from its transfer to the old wallet by the rotated rail's deposit watcher", async () => {
    const inv = await createInvoice("4.00");
    const payer = await mintedPayer(gw, "key rotation test payer: deposit", 4_000_000n);
    const nonce = keccak256(stringToHex("key rotation test: bound before, mined after"));
    const signed = await signTransfer(payer, oldWallet, 4_000_000n, nonce);
    const oldBalance = await gw.tokenBalance(oldWallet);
    await gw.setAutomine(false);
    let rotated: EvmRail | undefined;
    try {
      // Sent by the gateway before the rotation, waiting in the pool as the operator restarts it with a new key.
      const submitted = await submitTransfer(inv.id, signed);
      if (!submitted.ok) throw new Error(`the payer's authorization was refused: ${submitted.message}`);
      expect(await bindingOf(inv.id)).toEqual({
        auth_from: payer.address.toLowerCase(),
        auth_to: oldWallet.toLowerCase(),
      });
      rotated = await railRotatedTo(await rotatedWallet("deposit watcher"));
      await gw.chain.networkHelpers.mine(1);
      await gw.setAutomine(true);
      const mined = await gw.chain.publicClient.getTransactionReceipt({
        hash: submitted.railReference as Hex,
      });
      expect(mined.status).toBe("success");
      expect(await gw.tokenBalance(oldWallet)).toBe(oldBalance + 4_000_000n); // a wallet the operator holds
      await gw.chain.networkHelpers.mine(1);
      await rotated.depositWatcher()!.catchUp(20);
      // Before: open, nothing received — the transfer paid the old wallet, not the rotated rail's.
      const after = await invoice(inv.id);
      expect(after.status).toBe("paid");
      expect(after.received_amount).toBe("4.000000");
      expect(after.payer?.toLowerCase()).toBe(payer.address.toLowerCase());
    } finally {
      await gw.setAutomine(true);
      await rotated?.stop();
    }
  });

  it("credits nothing when the bound payer's nonce pays an address never ours instead", async () => {
    const inv = await createInvoice("3.00");
    const payer = await mintedPayer(gw, "key rotation test payer: elsewhere", 6_000_000n);
    const nonce = keccak256(stringToHex("key rotation test: the nonce spent elsewhere"));
    const signed = await signTransfer(payer, oldWallet, 3_000_000n, nonce);
    // The payer's own other authorization of the same nonce, to a stranger, mined before ours.
    const stranger = privateKeyToAccount(keccak256(stringToHex("key rotation test: a stranger"))).address;
    const elsewhere = await signTransfer(payer, stranger, 3_000_000n, nonce);
    await gw.setAutomine(false);
    let rotated: EvmRail | undefined;
    try {
      const submitted = await submitTransfer(inv.id, signed);
      if (!submitted.ok) throw new Error(`the payer's authorization was refused: ${submitted.message}`);
      // Sent as a stranger would who copied it, mined before ours (its tip is higher).
      const firstHash = await submitCopiedAuthorization(gw, gw.chain.contracts.testUsd, {
        authorization: elsewhere.message,
        signature: elsewhere.signature,
      });
      rotated = await railRotatedTo(await rotatedWallet("elsewhere"));
      await gw.chain.networkHelpers.mine(1);
      await gw.setAutomine(true);
      const first = await gw.chain.publicClient.getTransactionReceipt({ hash: firstHash });
      expect(first.status).toBe("success");
      const ours = await gw.chain.publicClient.getTransactionReceipt({
        hash: submitted.railReference as Hex,
      });
      expect(ours.status).toBe("reverted");
      await gw.chain.networkHelpers.mine(1);
      await rotated.depositWatcher()!.catchUp(20);
      const after = await invoice(inv.id);
      expect(after.status).toBe("open");
      expect(after.received_amount === null || after.received_amount === "0.000000").toBe(true);
    } finally {
      await gw.setAutomine(true);
      await rotated?.stop();
    }
  });
});

describe("an x402 row sent before the hot wallet's key rotated, front-run by a copy, left submitted", () => {
  it("is settled by reconciliation from the copy that paid the old wallet, not failed as reverted", async () => {
    const payer = await mintedPayer(gw, "key rotation test payer: reconcile", 1_000n);
    const p = await signedX402Payment(gw, chain, payer, 700n, {
      nonce: keccak256(stringToHex("key rotation test: reconcile")),
      window: { validAfter: 0n, validBefore: 2_000_000_000n },
      description: "key rotation test",
    });
    expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
    const key = [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()];
    const rowOf = async () => {
      const [row] = await gw.app.db.query<{
        status: string;
        failure: string | null;
        tx_hash: Hex | null;
        invoice_id: string | null;
        spent_tx_hash: string | null;
      }>(
        `SELECT status, failure, tx_hash, invoice_id, spent_tx_hash FROM x402_authorizations
         WHERE payer = $1 AND nonce = $2`,
        key,
      );
      return row!;
    };
    // Sent before the rotation; a stranger's copy of the payer's authorization, sent once ours is, mined first: ours
    // reverts, the copy pays the old wallet.
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    await gw.setAutomine(false);
    let copyTx: Hex;
    let settling: ReturnType<typeof settler.settle>;
    try {
      settling = settler.settle(p.claimed, p.requirements);
      await expect.poll(async () => (await rowOf()).status, { timeout: 10_000 }).toBe("submitted");
      copyTx = await submitCopiedAuthorization(gw, chain.token, p.claimed);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await gw.setAutomine(true);
    }
    expect(await settling).toMatchObject({ ok: true, transaction: copyTx });
    const ownTx = (await rowOf()).tx_hash!;
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: ownTx })).status).toBe("reverted");
    expect(await bindingOf((await rowOf()).invoice_id!)).toMatchObject({ auth_to: oldWallet.toLowerCase() });
    // Its outcome not recorded (as a settler whose receipt wait ran out leaves it), as the operator restarts with a
    // new key: x402's chain names the rotated wallet.
    const forceSubmitted = () =>
      gw.app.db.query(
        `UPDATE x402_authorizations SET status = 'submitted', spent_block = NULL, spent_tx_hash = NULL
         WHERE payer = $1 AND nonce = $2`,
        key,
      );
    await forceSubmitted();
    const rotated = { ...chain, hotWallet: (await rotatedWallet("reconcile")).account.address };
    const reconcile = (on: X402Chain) =>
      reconcileX402(
        { db: gw.app.db, settlement: gw.app.settlement, chains: { chains: [on] }, logger: silentLogger },
        { submittedQuietMs: 0 },
      );
    // Before: failed "reverted", the copy read as spent on other terms (its `to` taken for the rotated wallet).
    expect(await reconcile(rotated)).toEqual({ settled: 1, failed: 0, left: 0 });
    expect(await rowOf()).toMatchObject({ status: "settled", failure: null, spent_tx_hash: copyTx });

    // A binding before evm migration 0023 (no `to` recorded) is read as the hot wallet of now, as before it.
    await forceSubmitted();
    await gw.app.db.query("UPDATE evm_deposits SET auth_to = NULL WHERE reference = $1", [
      (await rowOf()).invoice_id,
    ]);
    expect(await reconcile(chain)).toEqual({ settled: 1, failed: 0, left: 0 });
    expect(await rowOf()).toMatchObject({ status: "settled", failure: null, spent_tx_hash: copyTx });
  });
});

describe("evm migration 0023", () => {
  it("fills the `to` of a binding made before it from its send's signer, leaves one never sent, and runs again harmlessly", async () => {
    const sent = await createInvoice("1.00");
    const payer = await mintedPayer(gw, "key rotation test payer: migration", 2_000_000n);
    const submitted = await submitTransfer(
      sent.id,
      await signTransfer(
        payer,
        oldWallet,
        1_000_000n,
        keccak256(stringToHex("key rotation test: migration")),
      ),
    );
    if (!submitted.ok) throw new Error(`the payer's authorization was refused: ${submitted.message}`);
    // Bound with no send of its authorization (a binding refused before sending keeps it).
    const unsent = await createInvoice("1.50");
    await gw.app.db.query("UPDATE evm_deposits SET auth_from = $2, auth_nonce = $3 WHERE reference = $1", [
      unsent.id,
      payer.address.toLowerCase(),
      keccak256(stringToHex("key rotation test: never sent")),
    ]);
    // As the rows were before it: no `to`.
    await gw.app.db.query("UPDATE evm_deposits SET auth_to = NULL WHERE reference = ANY($1)", [
      [sent.id, unsent.id],
    ]);
    const script = await readFile(
      path.join(import.meta.dirname, "../../adapters/evm/migrations/0023_evm_deposits_auth_to.sql"),
      "utf8",
    );
    for (let run = 0; run < 2; run += 1)
      for (const statement of splitStatements(script)) await gw.app.db.query(statement);
    expect(await bindingOf(sent.id)).toMatchObject({ auth_to: oldWallet.toLowerCase() });
    expect(await bindingOf(unsent.id)).toMatchObject({ auth_to: null });
  });
});
