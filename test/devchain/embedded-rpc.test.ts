// #23 item 5: npm start's embedded chain served over JSON-RPC (gateway/app/dev-chain.ts serveEmbeddedChains):
// viem and ethers v6 connect to the URL and read the payer's TestUSD; errors and bad input answer as JSON-RPC.
import { ethers } from "ethers";
import { createPublicClient, erc20Abi, http } from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type EmbeddedChain,
  hardhatMnemonic,
  startEmbeddedChain,
  testUsdAbi,
} from "../../adapters/evm/index.ts";
import { serveEmbeddedChains } from "../../gateway/app/dev-chain.ts";

describe("the embedded chain over JSON-RPC", () => {
  let chain: EmbeddedChain;
  let served: Awaited<ReturnType<typeof serveEmbeddedChains>>;
  const payer = mnemonicToAccount(hardhatMnemonic, { addressIndex: 3 }).address;

  beforeAll(async () => {
    chain = await startEmbeddedChain();
    const hash = await chain.walletClient.writeContract({
      address: chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer, 1_000_000_000n],
    });
    await chain.publicClient.waitForTransactionReceipt({ hash });
    served = await serveEmbeddedChains(new Map([["evm", chain]]), { host: "127.0.0.1", port: 0 });
  });

  afterAll(async () => {
    await served?.close();
    await chain?.close();
  });

  it("viem and ethers v6 read the payer's TestUSD at the served URL", async () => {
    const [rpc] = served.served;
    expect(rpc).toBeDefined();
    const url = rpc?.url as string;
    const viem = createPublicClient({ transport: http(url) });
    expect(await viem.getChainId()).toBe(31_337);
    expect(
      await viem.readContract({
        address: chain.contracts.testUsd,
        abi: erc20Abi,
        functionName: "balanceOf",
        args: [payer],
      }),
    ).toBe(1_000_000_000n);
    const provider = new ethers.JsonRpcProvider(url);
    expect((await provider.getNetwork()).chainId).toBe(31_337n);
    const token = new ethers.Contract(
      chain.contracts.testUsd,
      ["function balanceOf(address) view returns (uint256)"],
      provider,
    );
    expect(await token.getFunction("balanceOf")(payer)).toBe(1_000_000_000n);
    provider.destroy();
  });

  it("answers bad input as JSON-RPC errors, and batches in order", async () => {
    const url = served.served[0]?.url as string;
    const post = async (body: string) =>
      (await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body })).json();
    expect(await post("{")).toMatchObject({ error: { code: -32700 } });
    expect(await post("{}")).toMatchObject({ error: { code: -32600 } });
    expect(await post("[]")).toMatchObject({ error: { code: -32600 } });
    expect(await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "no_such_method" }))).toMatchObject({
      id: 1,
      error: { code: expect.any(Number) },
    });
    const batch = await post(
      JSON.stringify([
        { jsonrpc: "2.0", id: 1, method: "eth_chainId" },
        { jsonrpc: "2.0", id: 2, method: "eth_blockNumber" },
      ]),
    );
    expect(batch).toMatchObject([{ id: 1, result: "0x7a69" }, { id: 2 }]);
  });
});
