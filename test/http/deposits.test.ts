// USDC invoices over the HTTP API on PGlite and on PostgreSQL: the invoice offers a deposit address and an EIP-3009
// authorization; POST /v1/invoices/:id/authorizations refuses a bad signature with nothing written or sent, takes a
// good one (the gateway submits it), and the invoice is paid — with its payer — once the deposit watcher sees it
// final. Both ways in depth, reorgs and over/under/late payments: test/evm/deposits.test.ts.
import type { Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvmRail, receiveWithAuthorizationTypedData, testUsdAbi } from "../../adapters/evm/index.ts";
import { errorOf, startTestGateway, type TestGateway } from "./support.ts";

describe.each(["pglite", "postgres"] as const)("USDC invoices on %s", (database) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ database });
  });
  afterAll(async () => {
    await gw?.app.close();
  });

  it("an authorization is checked (a bad one writes and sends nothing), submitted, and credited with its payer", async () => {
    const chain = gw.app.chain!;
    const payer = chain.accounts[4]!;
    const minted = await chain.walletClient.writeContract({
      address: chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, 50_000_000n],
    });
    await chain.publicClient.waitForTransactionReceipt({ hash: minted });
    const created = await gw.client.POST("/v1/invoices", {
      body: { account: gw.app.demo!.merchant.id, asset: "USDC", amount: "12.5" },
    });
    expect(created.response.status).toBe(201);
    const invoice = created.data!;
    expect(invoice).toMatchObject({ rail: "evm", status: "open", payer: null });
    expect(invoice.instructions.deposit_address).toMatch(/^0x[0-9a-fA-F]{40}$/);
    const typed = JSON.parse(invoice.instructions.authorization_typed_data!);
    const message = {
      from: payer.address,
      to: invoice.instructions.authorization_to as Hex,
      value: BigInt(invoice.instructions.authorization_value!),
      validAfter: 0n,
      validBefore: BigInt(invoice.instructions.authorization_valid_before!),
      nonce: invoice.instructions.authorization_nonce as Hex,
    };
    const body = (signature: Hex) => ({
      from: payer.address,
      value: message.value.toString(),
      valid_after: "0",
      valid_before: message.validBefore.toString(),
      nonce: message.nonce,
      signature,
    });
    const authorize = (id: string, signature: Hex) =>
      gw.client.POST("/v1/invoices/{id}/authorizations", { params: { path: { id } }, body: body(signature) });

    // The watchers' own bookkeeping (cursor, lease, block hashes) moves on in the background: left out.
    const written = async () =>
      Object.entries(await gw.tableDigests()).filter(([table]) => !table.startsWith("evm_watch"));
    const digests = await written();
    const nonce = await gw.hotWalletNonce();
    const forged = await chain.accounts[5]!.signTypedData!(
      receiveWithAuthorizationTypedData(typed.domain, message),
    );
    const refused = await authorize(invoice.id, forged);
    expect(refused.response.status).toBe(400);
    expect(errorOf(refused).code).toBe("signature_invalid");
    expect(await written()).toEqual(digests);
    expect(await gw.hotWalletNonce()).toBe(nonce);

    const signed = await payer.signTypedData!(receiveWithAuthorizationTypedData(typed.domain, message));
    const submitted = await authorize(invoice.id, signed);
    expect(submitted.response.status).toBe(202);
    await chain.publicClient.waitForTransactionReceipt({ hash: submitted.data!.transaction as Hex });
    await (gw.app.rails.get("evm") as EvmRail).depositWatcher()!.catchUp(20);
    const paid = await gw.client.GET("/v1/invoices/{id}", { params: { path: { id: invoice.id } } });
    expect(paid.data).toMatchObject({ status: "paid", received_amount: "12.500000" });
    expect(paid.data!.payer?.toLowerCase()).toBe(payer.address.toLowerCase());

    const unknown = await authorize("inv_nope", signed);
    expect(unknown.response.status).toBe(404);
    expect(errorOf(unknown).code).toBe("invoice_not_found");
  });
});
