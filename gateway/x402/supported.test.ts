// GET /supported when a chain's node cannot tell the token's EIP-712 domain: one that refuses connections, one that
// takes the request and never answers. Each chain is still listed, without `name` and `version`, and the answer does
// not wait for the node's own timeout. (The domain read from a live chain: test/evm/x402-facilitator.test.ts.)

import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { createPublicClient, http } from "viem";
import { hardhat } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import { createChainRegistry, type X402Chain } from "./chains.ts";
import { facilitatorSupported } from "./facilitator.ts";

const token = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const hotWallet = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

let silent: Server;
const sockets: Socket[] = [];
let closedPort: number;

beforeAll(async () => {
  silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  // A port nothing listens on: taken, then let go.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

const chainAt = (url: string, chainId: number): X402Chain => ({
  rail: `evm-${chainId}`,
  chainId,
  // The node's own wait is long (60 s): the answer must not follow it.
  publicClient: createPublicClient({
    chain: { ...hardhat, id: chainId },
    transport: http(url, { timeout: 60_000, retryCount: 0 }),
  }),
  token,
  asset: assets.USDC,
  hotWallet,
  receiptTimeoutMs: 1_000,
});

describe("facilitatorSupported", () => {
  it("lists a chain whose node refuses or never answers, without the token's domain, not waiting for its node", async () => {
    const silentPort = (silent.address() as AddressInfo).port;
    const chains = createChainRegistry([
      chainAt(`http://127.0.0.1:${closedPort}`, 84532),
      chainAt(`http://127.0.0.1:${silentPort}`, 31337),
    ]);

    const supported = await facilitatorSupported({ chains });

    expect(supported.kinds.map((kind) => [kind.x402Version, kind.network])).toEqual([
      [2, "eip155:84532"],
      [1, "base-sepolia"],
      [2, "eip155:31337"],
    ]);
    for (const kind of supported.kinds) expect(kind.extra).toEqual({ asset: token, payTo: hotWallet });
    expect(supported.signers).toEqual({ "eip155:*": [hotWallet] });
  }, 10_000);
});
