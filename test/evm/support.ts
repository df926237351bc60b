// A gateway on the embedded defaults for one test file, with helpers for the splitter, the token and the ledger.

import { readFile } from "node:fs/promises";
import path from "node:path";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { x402Client, x402HTTPClient } from "@x402/fetch";
import {
  type Account,
  type Address,
  createPublicClient,
  custom,
  type Hex,
  keccak256,
  maxUint256,
  type PublicClient,
  parseEventLogs,
  parseSignature,
  stringToHex,
  type Transport,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { expect } from "vitest";
import {
  canonicalSplit,
  createEvmRail,
  type EvmRail,
  type EvmRailParams,
  revenueSplitterAbi,
  testUsdAbi,
  type WatchedEvent,
} from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import { assets } from "../../core/index.ts";
import { type AccountRecord, getTenantAccount } from "../../gateway/accounts/index.ts";
import { type App, type AppOptions, createApp } from "../../gateway/app.ts";
import type { Account as LedgerAccount, Transfer } from "../../gateway/ledger/index.ts";
import { railAccountOpened } from "../../gateway/payments/index.ts";
import { evmMirrorAccounts, evmMirrorTransferId } from "../../gateway/settlement/evm.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import type { ClaimedPayment } from "../../gateway/x402/settle.ts";
import {
  authorizationOf,
  type Eip3009Authorization,
  type ExactRequirements,
} from "../../gateway/x402/verify.ts";
import { testConfig } from "../support/config.ts";
import { withIdempotencyKey } from "../support/idempotency-keys.ts";

export type Gateway = Awaited<ReturnType<typeof startGateway>>;

export async function startGateway(env: Record<string, string> = {}, options: AppOptions = {}) {
  const app: App = await createApp(testConfig({ LOG_LEVEL: "silent", PORT: "0", ...env }), options);
  if (app.demo === null || app.chain === null || app.evmWatcher === null)
    throw new Error("development mode with the embedded chain and its splitter watcher was expected");
  const chain = app.chain;
  const watcher = app.evmWatcher;
  const rail = app.rails.get("evm") as EvmRail;
  const mirrorIds = evmMirrorAccounts({ chainId: chain.chain.id, splitter: chain.contracts.splitter });

  async function send(
    account: Account,
    call: { address: Address; abi: any; functionName: string; args: any[] },
  ) {
    const hash = await chain.walletClient.writeContract({ ...call, account, chain: chain.chain } as never);
    const receipt = await chain.publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`${call.functionName} reverted (${hash})`);
    return receipt;
  }

  async function call(method: "GET" | "POST", url: string, body?: unknown) {
    const response = await app.server.inject({
      method,
      url,
      headers: withIdempotencyKey(method, url, {
        authorization: `Bearer ${app.demo!.apiKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      }),
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    return { status: response.statusCode, body: response.body === "" ? null : response.json() };
  }

  return {
    app,
    chain,
    watcher,
    rail,
    mirrorIds,
    key: app.demo.apiKey,
    call,
    send,
    /** Hardhat's mining of each transaction as it comes, on or off. */
    setAutomine: (on: boolean) =>
      chain.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never }),
    /** A paywall at `resource` crediting `account` (the demo merchant unless named): 0.01 USD by x402 on `evm`. */
    async x402Paywall(resource: string, description = "a report", account = app.demo!.merchant.id) {
      const created = await call("POST", "/v1/paywalls", {
        resource,
        description,
        price: { amount: "0.01", asset: "USD" },
        offers: [{ scheme: "x402", rail: "evm" }],
        accounts: [account],
      });
      if (created.status !== 201) throw new Error(`paywall not made: ${JSON.stringify(created.body)}`);
      return created.body as { id: string };
    },
    /**
     * A new USDC merchant account of the demo tenant, made through the API: one test's own, so that no payment of
     * another test, credited late, moves the balance it measures.
     */
    async merchantAccount(name: string): Promise<AccountRecord> {
      const created = await call("POST", "/v1/accounts", { asset: "USDC", kind: "merchant", name });
      if (created.status !== 201) throw new Error(`account not made: ${JSON.stringify(created.body)}`);
      const account = await getTenantAccount(app.db, { tenantId: app.demo!.tenantId, id: created.body.id });
      if (account === null) throw new Error(`account ${created.body.id} not found`);
      return account;
    },
    /** Creates a split among `recipients` (any order) and returns its id and canonical definition. */
    async createSplit(recipients: readonly Address[], basisPoints: readonly number[]) {
      const split = canonicalSplit({ recipients, basisPoints });
      const receipt = await send(chain.accounts[0]!, {
        address: chain.contracts.splitter,
        abi: revenueSplitterAbi,
        functionName: "createSplit",
        args: [[...split.recipients], [...split.basisPoints]],
      });
      const [created] = parseEventLogs({
        abi: revenueSplitterAbi,
        eventName: "SplitCreated",
        logs: receipt.logs,
      });
      if (created === undefined) throw new Error("no SplitCreated");
      return { splitId: created.args.splitId, ...split };
    },
    /** Mints TestUSD to a payer and lets the splitter take it. */
    async fund(payer: Account, amount: bigint) {
      await send(chain.accounts[0]!, {
        address: chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "mint",
        args: [payer.address, amount],
      });
      await send(payer, {
        address: chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "approve",
        args: [chain.contracts.splitter, maxUint256],
      });
    },
    /** A payer pays into a split directly (not through the gateway): the Paid event's coordinates. */
    async payDirect(payer: Account, splitId: Hex, amount: bigint, ref: Hex) {
      const receipt = await send(payer, {
        address: chain.contracts.splitter,
        abi: revenueSplitterAbi,
        functionName: "pay",
        args: [splitId, chain.contracts.testUsd, amount, ref],
      });
      const [paid] = parseEventLogs({ abi: revenueSplitterAbi, eventName: "Paid", logs: receipt.logs });
      if (paid === undefined) throw new Error("no Paid");
      return { txHash: paid.transactionHash, logIndex: paid.logIndex, blockNumber: paid.blockNumber };
    },
    async ledgerAccount(id: bigint): Promise<LedgerAccount> {
      const [account] = await app.ledger.lookupAccounts([id]);
      if (account === undefined) throw new Error(`ledger account ${id} not found`);
      return account;
    },
    /** What the mirror wrote for leg `leg` of an event: its pending transfer, post and void (each or null). */
    async mirrored(event: { txHash: Hex; logIndex: number; generation?: number }, leg = 0) {
      const coordinates = { chainId: chain.chain.id, generation: 0, ...event };
      const [pending, post, voided] = await Promise.all(
        (["pending", "post", "void"] as const).map(async (purpose) => {
          const [transfer] = await app.ledger.lookupTransfers([
            evmMirrorTransferId(coordinates, purpose, leg),
          ]);
          return transfer ?? null;
        }),
      );
      return { pending, post, voided } as {
        pending: Transfer | null;
        post: Transfer | null;
        voided: Transfer | null;
      };
    },
    async eventRow(txHash: Hex, logIndex: number) {
      const [row] = await app.db.query<{ status: string; generation: number }>(
        "SELECT status, generation FROM evm_watch_events WHERE tx_hash = $1 AND log_index = $2",
        [txHash, logIndex],
      );
      return row ?? null;
    },
    tokenBalance(address: Address): Promise<bigint> {
      return chain.publicClient.readContract({
        address: chain.contracts.testUsd,
        abi: testUsdAbi,
        functionName: "balanceOf",
        args: [address],
      });
    },
    /** What the rail's ETH fee account has been charged (the gas booked), in gwei. */
    async gasFeesBooked(): Promise<bigint> {
      const fees = await railAccountOpened(app.settlement, { kind: "fee", rail: "evm", asset: assets.ETH });
      const [account] = await app.ledger.lookupAccounts([fees.ledgerAccountId]);
      if (account === undefined) throw new Error("the rail's fee account has no ledger account");
      return account.debitsPosted - account.creditsPosted;
    },
    async ledgerTransferCount(): Promise<bigint> {
      const [row] = await app.db.query<{ count: bigint }>("SELECT count(*) AS count FROM ledger_transfers");
      return row!.count;
    },
    usdc: assets.USDC,
  };
}

export type { WatchedEvent };

/**
 * Submits a payer's signed TransferWithAuthorization as a stranger would who copied it (from the mempool, say): the
 * same signed transfer on `token`, from another account, with a tip high enough to be mined before the gateway's
 * transaction. Returns its hash.
 */
export function submitCopiedAuthorization(
  gw: Gateway,
  token: Address,
  signed: { authorization: Eip3009Authorization; signature: Hex },
): Promise<Hex> {
  const a = signed.authorization;
  const { v, yParity, r, s } = parseSignature(signed.signature);
  return gw.chain.walletClient.writeContract({
    address: token,
    abi: testUsdAbi,
    functionName: "transferWithAuthorization",
    args: [
      a.from,
      a.to,
      a.value,
      a.validAfter,
      a.validBefore,
      a.nonce,
      v === undefined ? yParity + 27 : Number(v),
      r,
      s,
    ],
    account: gw.chain.accounts[4]!,
    chain: gw.chain.chain,
    gas: 200_000n,
    maxPriorityFeePerGas: 1_000_000_000_000n,
    maxFeePerGas: 2_000_000_000_000n,
  } as never);
}

/**
 * Another EVM rail on the gateway's database, node and hot wallet: what a second gateway process runs. `overrides`
 * change what that process is configured with (its clients, gas cap, receipt wait, replacement delay, deposits, the
 * hot wallet's send queue, its RevenueSplitter).
 */
export function anotherProcessRail(
  gw: Gateway,
  overrides: Partial<
    Pick<
      EvmRailParams,
      | "db"
      | "publicClient"
      | "walletClient"
      | "gas"
      | "receiptTimeoutMs"
      | "replaceAfterMs"
      | "deposits"
      | "sendsQueuedMax"
      | "confirmations"
      | "splitter"
      | "logger"
      | "nowMs"
    >
  > = {},
): EvmRail {
  return createEvmRail({
    id: "evm",
    db: gw.app.db,
    publicClient: gw.chain.publicClient,
    walletClient: gw.chain.walletClient,
    token: { address: gw.chain.contracts.testUsd, asset: assets.USDC },
    splitter: gw.chain.contracts.splitter,
    confirmations: 1,
    gas: { priorityFeeWei: 1_000_000_000n, maxFeeWei: 200_000_000_000n },
    transferGasEstimate: 60_000n,
    snapshotRefreshMs: 60_000,
    receiptTimeoutMs: 30_000,
    replaceAfterMs: 120_000,
    expectedLatencyMs: 1_000,
    ...overrides,
  });
}

/**
 * The official x402 client (@x402/fetch's x402Client with @x402/evm's exact scheme) signing with the demo payer's key,
 * or `privateKey`: TestUSD is no default asset of the client's, so it is allowed by name, capped at 0.1 (the v1
 * client's default cap).
 */
export function officialX402Client(gw: Gateway, privateKey?: `0x${string}`) {
  const payer = gw.app.demo!.chains[0]!.payer;
  if (payer === null) throw new Error("the demo chain has no payer");
  return registerExactEvmScheme(
    x402Client.fromConfig({
      schemes: [],
      spendControls: {
        allowedAssets: [
          {
            network: `eip155:${gw.chain.chain.id}`,
            asset: gw.chain.contracts.testUsd,
            maxAmountPerPayment: "100000",
          },
        ],
      },
    }),
    { signer: privateKeyToAccount(privateKey ?? payer.privateKey) },
  );
}

/** What a node is asked for by eth_getLogs: the filter's range and topics. */
export type LogsSeen = (filter: { fromBlock: Hex; toBlock: Hex; topics: unknown[] }) => void;

/** A transport to the chain whose every eth_getLogs is first shown to `seen` (which may throw: the node's failure). */
export const gettingLogsOf = (gw: Gateway, seen: LogsSeen): Transport =>
  custom(
    {
      request: (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_getLogs") seen((args.params as Parameters<LogsSeen>[0][])[0]!);
        return gw.chain.provider.request(args as never);
      },
    },
    { retryCount: 0 },
  );

/** `chain` read through gettingLogsOf(`seen`): a node that may refuse some reads of logs, and answers the rest. */
export function chainGettingLogs<C extends { publicClient: PublicClient }>(
  gw: Gateway,
  chain: C,
  seen: LogsSeen,
): C {
  const transport = gettingLogsOf(gw, seen);
  return {
    ...chain,
    publicClient: createPublicClient({ chain: gw.chain.chain, transport, pollingInterval: 50 }),
  };
}

/** X402BatchSettler's compiled artifact (hardhat build). */
export async function x402BatchSettlerArtifact(): Promise<{
  abi: readonly { type: string; name?: string }[];
  bytecode: Hex;
}> {
  const file = path.join(
    import.meta.dirname,
    "..",
    "..",
    "artifacts",
    "contracts",
    "X402BatchSettler.sol",
    "X402BatchSettler.json",
  );
  return JSON.parse(await readFile(file, "utf8"));
}

/**
 * A gateway for the x402 batch tests, which drive settlement and reconciliation themselves: one confirmation, blocks
 * mined as transactions come, its watchers stopped, X402BatchSettler deployed, and its chain as x402 names it.
 */
export async function x402BatchGateway(): Promise<{
  gw: Gateway;
  settlerAddress: Address;
  chain: X402Chain;
}> {
  const gw = await startGateway({ EVM_CONFIRMATIONS: "1", EVM_EMBEDDED_BLOCK_INTERVAL_MS: "0" });
  await gw.watcher.stop();
  await gw.rail.depositWatcher()!.stop();
  const { abi, bytecode } = await x402BatchSettlerArtifact();
  const hash = await gw.chain.walletClient.deployContract({
    abi,
    bytecode,
    account: gw.chain.walletClient.account,
  });
  const settlerAddress = (await gw.chain.publicClient.waitForTransactionReceipt({ hash })).contractAddress!;
  const chain: X402Chain = {
    rail: "evm",
    chainId: gw.chain.chain.id,
    publicClient: gw.chain.publicClient,
    token: gw.chain.contracts.testUsd,
    asset: assets.USDC,
    hotWallet: gw.chain.walletClient.account.address,
    receiptTimeoutMs: 30_000,
  };
  return { gw, settlerAddress, chain };
}

/** A payer whose key is `seed`'s (the same every run) holding `funds` TestUSD, minted by the chain's first account. */
export async function mintedPayer(gw: Gateway, seed: string, funds: bigint) {
  const account = privateKeyToAccount(keccak256(stringToHex(seed)));
  if (funds > 0n)
    await gw.send(gw.chain.accounts[0]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "mint",
      args: [account.address, funds],
    });
  return account;
}

/**
 * `signer`'s signature over an authorization as a payment's header carries it (its amounts decimal strings), on the
 * test token's domain: the payer's own when `signer` is the payer, one made up over the payer's public terms otherwise.
 */
export function signatureOver(
  signer: Account,
  chain: { chainId: number; token: Address },
  a: { from: Address; to: Address; value: string; validAfter: string; validBefore: string; nonce: Hex },
): Promise<Hex> {
  if (signer.signTypedData === undefined) throw new Error("a signer that cannot sign typed data");
  return signer.signTypedData(
    transferWithAuthorizationTypedData(
      { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
      {
        from: a.from,
        to: a.to,
        value: BigInt(a.value),
        validAfter: BigInt(a.validAfter),
        validBefore: BigInt(a.validBefore),
        nonce: a.nonce,
      },
    ),
  );
}

/**
 * `payer`'s signed x402 payment of `value` to `chain`'s hot wallet under `nonce` within `window`, credited to
 * `merchant` (the demo merchant unless named), as the facilitator hands it to a settler; `signer`, when another than
 * the payer, makes a bad one.
 */
export async function signedX402Payment(
  gw: Gateway,
  chain: X402Chain,
  payer: Account,
  value: bigint,
  options: {
    nonce: Hex;
    window: { validAfter: bigint; validBefore: bigint };
    description: string;
    signer?: Account;
    merchant?: AccountRecord;
  },
): Promise<{ claimed: ClaimedPayment; requirements: ExactRequirements }> {
  const authorization = {
    from: payer.address,
    to: chain.hotWallet,
    value,
    validAfter: options.window.validAfter,
    validBefore: options.window.validBefore,
    nonce: options.nonce,
  };
  const signer = options.signer ?? payer;
  if (signer.signTypedData === undefined) throw new Error("a payer that cannot sign typed data");
  const signature = await signer.signTypedData(
    transferWithAuthorizationTypedData(
      { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
      authorization,
    ),
  );
  const requirements: ExactRequirements = {
    version: 2,
    chain,
    network: `eip155:${chain.chainId}`,
    amount: value,
    payTo: chain.hotWallet,
    asset: chain.token,
    extra: { name: "USD Coin", version: "2" },
  };
  const claimed: ClaimedPayment = {
    version: 2,
    requirements,
    payer: payer.address,
    authorization,
    signature,
    credit: { tenantId: gw.app.demo!.tenantId, accountId: (options.merchant ?? gw.app.demo!.merchant).id },
    description: options.description,
  };
  return { claimed, requirements };
}

/** A payer whose key is `seed`'s holding `funds` TestUSD, with ETH to move it itself: its account and private key. */
export async function payerWithGas(gw: Gateway, seed: string, funds: bigint) {
  const account = await mintedPayer(gw, seed, funds);
  await gw.chain.networkHelpers.setBalance(account.address, 10n ** 18n);
  return { account, privateKey: keccak256(stringToHex(seed)) };
}

/** The payer's newest x402 row, as the gateway recorded it. */
export const x402RowOf = async (gw: Gateway, payer: Hex) =>
  (
    await gw.app.db.query<{
      status: string;
      tx_hash: Hex | null;
      failure: string | null;
      spent_tx_hash: Hex | null;
    }>(
      "SELECT status, tx_hash, failure, spent_tx_hash FROM x402_authorizations WHERE payer = $1 ORDER BY created_at DESC LIMIT 1",
      [payer.toLowerCase()],
    )
  )[0];

/**
 * The payer's payment of `price` to the paywall at `shop` + `path`, sent while the chain mines nothing: once the
 * gateway's transaction is sent, the payer moves its whole balance away at a higher fee, which is mined first in the
 * same block, and the gateway's transfer reverts without spending the authorization. The paywall's answer, the
 * payment's header, its signed authorization and the gateway's transaction; the payer's balance is then given back
 * (minted again).
 */
export async function revertedX402Payment(
  gw: Gateway,
  shop: string,
  path: string,
  payer: Awaited<ReturnType<typeof payerWithGas>>,
  price: bigint,
) {
  const client = new x402HTTPClient(officialX402Client(gw, payer.privateKey));
  const challenge = await fetch(`${shop}${path}`);
  expect(challenge.status).toBe(402);
  const required = client.getPaymentRequiredResponse(
    (name) => challenge.headers.get(name),
    await challenge.json(),
  );
  const payload = await client.createPaymentPayload(required);
  const header = client.encodePaymentSignatureHeader(payload);
  await gw.setAutomine(false);
  let answering: Promise<Response>;
  try {
    answering = fetch(`${shop}${path}`, { headers: header });
    await expect
      .poll(async () => (await x402RowOf(gw, payer.account.address))?.status, { timeout: 15_000 })
      .toBe("submitted");
    await gw.chain.walletClient.writeContract({
      account: payer.account,
      chain: gw.chain.chain,
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "transfer",
      args: [gw.chain.accounts[5]!.address, price],
      gas: 100_000n,
      maxFeePerGas: 500_000_000_000n,
      maxPriorityFeePerGas: 100_000_000_000n,
    });
    await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
  } finally {
    await gw.setAutomine(true);
  }
  const answer = await answering!;
  const row = (await x402RowOf(gw, payer.account.address))!;
  const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: row.tx_hash! });
  expect(receipt.status).toBe("reverted");
  const signed = payload.payload as {
    authorization: Parameters<typeof authorizationOf>[0];
    signature: Hex;
  };
  const authorization = authorizationOf(signed.authorization);
  const used = await gw.chain.publicClient.readContract({
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "authorizationState",
    args: [authorization.from, authorization.nonce],
  });
  expect(used).toBe(false);
  await gw.send(gw.chain.accounts[0]!, {
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [payer.account.address, price],
  });
  return {
    answer: { status: answer.status, body: (await answer.json()) as { error: string; message: string } },
    header,
    signed: { authorization, signature: signed.signature },
    ownTx: row.tx_hash!,
  };
}
