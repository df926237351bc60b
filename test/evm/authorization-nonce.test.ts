// An x402 (EIP-3009 transferWithAuthorization) nonce is the payer's and public once its settlement is broadcast:
// another payer may use the same nonce in his own nonce space and pay the hot wallet a token amount first. The
// watcher credits an invoice from an AuthorizationUsed log only when both the nonce and the authorizer are the
// (payer, nonce) the invoice was bound to: the other payer's transfer credits nothing (and does not become the
// invoice's payer, to whom a refund would go); the bound payer's own authorization still pays it.
import { type Account, type Hex, keccak256, parseSignature, stringToHex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUsdAbi } from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import { submitInvoicePayment } from "../../gateway/settlement/index.ts";
import { type Gateway, startGateway } from "./support.ts";

let gw: Gateway;
const payerIndex = 7;
const attackerIndex = 8;

beforeAll(async () => {
  gw = await startGateway({ EVM_CONFIRMATIONS: "2", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "0" });
  await gw.watcher.stop();
  await gw.rail.depositWatcher()!.stop();
  for (const index of [payerIndex, attackerIndex])
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [gw.chain.accounts[index]!.address, 1_000_000_000n],
    });
  await poll();
});
afterAll(async () => {
  await gw?.chain.publicClient.request({ method: "evm_setAutomine" as never, params: [true] as never });
  await gw?.app.close();
});

const payer = () => gw.chain.accounts[payerIndex]!;
const attacker = () => gw.chain.accounts[attackerIndex]!;
const poll = () => gw.rail.depositWatcher()!.catchUp(20);
const setAutomine = (on: boolean) =>
  gw.chain.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });

/** A signature as the token's v (27 or 28), r, s. */
function vrs(signature: Hex) {
  const { v, yParity, r, s } = parseSignature(signature);
  return [v === undefined ? yParity + 27 : Number(v), r, s] as const;
}

type InvoiceBody = { id: string; status: string; received_amount: string | null; payer: string | null };

async function invoice(id: string): Promise<InvoiceBody> {
  const read = await gw.call("GET", `/v1/invoices/${id}`);
  expect(read.status).toBe(200);
  return read.body as InvoiceBody;
}

/** `signer`'s transferWithAuthorization of `value` to the hot wallet with `nonce`. */
async function signTransfer(signer: Account, value: bigint, nonce: Hex) {
  const nowS = BigInt(Math.floor(Date.now() / 1000));
  const message = {
    from: signer.address,
    to: gw.chain.walletClient.account.address,
    value,
    validAfter: 0n,
    validBefore: nowS + 3_600n,
    nonce,
  };
  const domain = {
    name: "USD Coin",
    version: "2",
    chainId: gw.chain.chain.id,
    verifyingContract: gw.chain.contracts.testUsd,
  };
  const signature = await signer.signTypedData!(transferWithAuthorizationTypedData(domain, message));
  return { message, signature };
}

/** As the x402 settler submits a payer's transfer authorization (gateway/x402/settle.ts), for the invoice made for it. */
function submitTransfer(
  invoiceId: string,
  signed: Awaited<ReturnType<typeof signTransfer>>,
  nonce: string = signed.message.nonce,
) {
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
      nonce,
      signature: signed.signature,
    },
  });
}

describe("an authorization log with the invoice's nonce from another payer", () => {
  it("credits nothing; the bound payer's own authorization then pays the invoice", async () => {
    const created = await gw.call("POST", "/v1/invoices", {
      account: gw.app.demo!.merchant.id,
      asset: "USDC",
      amount: "10.00",
    });
    expect(created.status).toBe(201);
    const inv = created.body as InvoiceBody;
    const nonce = keccak256(stringToHex(`payer-chosen x402 nonce ${Date.now()}`));
    const signed = await signTransfer(payer(), 10_000_000n, nonce);

    // The payer's authorization binds the invoice to (payer, nonce); its transaction waits in the mempool, where
    // the attacker sees the nonce and gets his own 1-unit transfer with it mined first (a higher priority fee).
    await setAutomine(false);
    // As the x402 settler submits it (gateway/x402/settle.ts): method transfer, for the invoice made for it.
    const submitted = await submitTransfer(inv.id, signed);
    if (!submitted.ok) throw new Error(`the payer's authorization was refused: ${submitted.message}`);
    const forged = await signTransfer(attacker(), 1n, nonce);
    const attackHash = await gw.chain.walletClient.writeContract({
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "transferWithAuthorization",
      args: [
        forged.message.from,
        forged.message.to,
        forged.message.value,
        forged.message.validAfter,
        forged.message.validBefore,
        nonce,
        ...vrs(forged.signature),
      ],
      account: attacker(),
      chain: gw.chain.chain,
      maxPriorityFeePerGas: 1_000_000_000_000n,
      maxFeePerGas: 2_000_000_000_000n,
    } as never);
    await gw.chain.networkHelpers.mine(1);
    await setAutomine(true);
    const attack = await gw.chain.publicClient.getTransactionReceipt({ hash: attackHash });
    const paid = await gw.chain.publicClient.getTransactionReceipt({ hash: submitted.railReference as Hex });
    expect(attack.status).toBe("success"); // the attacker's nonce space is his own: the token accepts it
    expect(paid.status).toBe("success");
    expect(attack.blockNumber).toBe(paid.blockNumber);
    expect(attack.transactionIndex).toBeLessThan(paid.transactionIndex); // mined first

    await gw.chain.networkHelpers.mine(2);
    await poll();
    const after = await invoice(inv.id);
    expect(after.status).toBe("paid");
    expect(after.received_amount).toBe("10.000000"); // the attacker's unit is not among it
    expect(after.payer?.toLowerCase()).toBe(payer().address.toLowerCase());
  });
});

describe("one authorization submitted again with its nonce in capitals", () => {
  it("is the same send: no second transaction of the hot wallet", async () => {
    const created = await gw.call("POST", "/v1/invoices", {
      account: gw.app.demo!.merchant.id,
      asset: "USDC",
      amount: "3.00",
    });
    expect(created.status).toBe(201);
    const nonce = keccak256(stringToHex(`nonce spelled twice ${Date.now()}`));
    const signed = await signTransfer(payer(), 3_000_000n, nonce);
    const submit = (spelled: string) => submitTransfer((created.body as InvoiceBody).id, signed, spelled);
    await setAutomine(false);
    let first: Awaited<ReturnType<typeof submit>>;
    let second: Awaited<ReturnType<typeof submit>>;
    try {
      first = await submit(nonce);
      // Still in the mempool: the token's authorizationState says unused, so only the key can tell.
      second = await submit(`0x${nonce.slice(2).toUpperCase()}`);
    } finally {
      await setAutomine(true);
    }
    if (!first.ok || !second.ok) throw new Error("an authorization was refused");
    // Before: a second key, a second transaction signed and sent (reverting once the first is mined).
    expect(second.railReference).toBe(first.railReference);
    const sends = await gw.app.db.query("SELECT attempt_id FROM evm_sends WHERE attempt_id ILIKE $1", [
      `%${nonce.slice(2, 18)}%`,
    ]);
    expect(sends).toHaveLength(1);
  });
});

describe("an authorization sent under the key of before the chain was in it", () => {
  it("is followed when submitted again, not sent a second time", async () => {
    const created = await gw.call("POST", "/v1/invoices", {
      account: gw.app.demo!.merchant.id,
      asset: "USDC",
      amount: "2.00",
    });
    const nonce = keccak256(stringToHex(`nonce sent before the upgrade ${Date.now()}`));
    const signed = await signTransfer(payer(), 2_000_000n, nonce);
    const submit = () => submitTransfer((created.body as InvoiceBody).id, signed);
    await setAutomine(false);
    try {
      const first = await submit();
      if (!first.ok) throw new Error(first.message);
      // As the code before this chain's id was in the key stored it: still pending across the upgrade.
      const oldKey = `transfer-auth:${payer().address.toLowerCase()}:${nonce}`;
      await gw.app.db.query("UPDATE evm_sends SET attempt_id = $1 WHERE tx_hash = $2", [
        oldKey,
        (first.railReference as string).toLowerCase(),
      ]);
      // Before: nothing under the new key, so a second transaction was signed (to revert once the first is mined).
      const again = await submit();
      if (!again.ok) throw new Error(again.message);
      expect(again.railReference).toBe(first.railReference);
      const sends = await gw.app.db.query("SELECT attempt_id FROM evm_sends WHERE attempt_id ILIKE $1", [
        `%${nonce.slice(2, 18)}%`,
      ]);
      expect(sends).toEqual([{ attempt_id: oldKey }]);
    } finally {
      await setAutomine(true);
    }
  });
});
