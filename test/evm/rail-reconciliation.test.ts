// Reconciling a rail, through the HTTP API on the embedded chain: GET /v1/rails shows each rail's clearing account
// beside what the rail reports it holds (the hot wallet's token, and its ETH), and POST /v1/rails/:rail/capital books
// the operator's own movements so that the two match. Tokens put into the hot wallet outside the gateway show as a
// difference until booked; a deposit credited shows as one until it is swept; a payout with its gas booked moves both
// alike. The capital route books a reference once and refuses what is not a booking; only the operator's credential
// is answered; a rail that cannot report shows null and a stable code, never a 500.
import { randomBytes } from "node:crypto";
import { type Address, createPublicClient, createWalletClient, defineChain, http, parseEther } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEvmRail, testUsdAbi } from "../../adapters/evm/index.ts";
import { amountMax, assets, formatAmount, type Rail } from "../../core/index.ts";
import { type RailModule, railModules } from "../../gateway/app.ts";
import { railCapitalLedgerId, sweepDepositsOnce } from "../../gateway/settlement/index.ts";
import { receivingToySnapshot } from "../support/toy-rail.ts";
import { type Gateway, startGateway } from "./support.ts";

const operatorKey = `op_${randomBytes(32).toString("base64url")}`;

/**
 * An EVM rail on the gateway's database and hot wallet whose node never answers (nothing listens there), on a chain id
 * of its own: every read of its balances fails.
 */
const unreachableRailModule: RailModule = ({ db, evm }) => {
  const first = evm[0]!;
  const chain = defineChain({ ...first.publicClient.chain, id: 31_399 });
  const transport = http("http://127.0.0.1:9", { retryCount: 0, timeout: 2_000 });
  const rail = createEvmRail({
    id: "evm-down",
    db,
    publicClient: createPublicClient({ chain, transport }),
    walletClient: createWalletClient({ account: first.walletClient.account, chain, transport }),
    token: { address: first.token, asset: assets.USDC },
    confirmations: 1,
    gas: first.gas,
    transferGasEstimate: 60_000n,
    snapshotRefreshMs: 60_000,
    receiptTimeoutMs: 2_000,
    replaceAfterMs: 120_000,
    expectedLatencyMs: 1_000,
  });
  return { rails: [rail] };
};

/** Whether the silent rail's balance answers at all (a PSP that stopped answering mid-request). */
let silent = false;

/** A rail built from the Rail contract alone whose balance, while `silent`, never answers. */
const silentRailModule: RailModule = () => {
  const rail: Rail = {
    id: "silent",
    kind: "fiat",
    asset: assets.USD,
    async start() {},
    async stop() {},
    snapshot: () => ({
      ...receivingToySnapshot({ id: "silent", kind: "fiat", asset: assets.USD }, amountMax),
      available: false,
    }),
    execute: async () => ({
      status: "failed",
      code: "rail_unavailable",
      message: "the silent rail pays nothing",
      retryElsewhere: true,
    }),
    onEvent() {},
    balance: () => (silent ? new Promise<bigint>(() => {}) : Promise.resolve(0n)),
  };
  return { rails: [rail] };
};

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway(
    { OPERATOR_KEY: operatorKey },
    { railModules: [...railModules, unreachableRailModule, silentRailModule] },
  );
  // This file drives the deposit watcher's polls itself.
  await gw.rail.depositWatcher()!.stop();
});
afterAll(async () => {
  await gw?.app.close();
});

type RailBalance = {
  rail: string;
  kind: string;
  asset: string;
  clearing_account: string | null;
  ledger: { posted: string; pending_in: string; pending_out: string };
  rail_balance: string | null;
  rail_error: { code: string; message: string } | null;
  difference: string | null;
};

/** A request with the operator's credential (or `key`). */
async function operator(method: "GET" | "POST", url: string, body?: unknown, key = operatorKey) {
  const response = await gw.app.server.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
  return { status: response.statusCode, body: response.json(), headers: response.headers };
}

async function railBalances(): Promise<RailBalance[]> {
  const listed = await operator("GET", "/v1/rails");
  expect(listed.status).toBe(200);
  expect(listed.body).toMatchObject({ object: "list", url: "/v1/rails", has_more: false });
  return listed.body.data as RailBalance[];
}

async function entry(rail: string, asset: string): Promise<RailBalance> {
  const found = (await railBalances()).find((each) => each.rail === rail && each.asset === asset);
  if (found === undefined) throw new Error(`no entry for ${rail} in ${asset}`);
  return found;
}

/** The difference on the first chain in `asset`, in minor units. */
async function difference(asset: "USDC" | "ETH"): Promise<bigint> {
  const shown = await entry("evm", asset);
  expect(shown.rail_error).toBeNull();
  return minor(shown.difference!, asset);
}

/** A decimal string of `asset` in its major unit, as minor units. */
function minor(text: string, asset: "USDC" | "ETH"): bigint {
  const scale = assets[asset].scale;
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole!) * 10n ** BigInt(scale) + BigInt(fraction.padEnd(scale, "0") || "0");
  return negative ? -value : value;
}

const hotWallet = () => gw.chain.walletClient.account.address;

const formatUsdc = (value: bigint) => formatAmount(value, assets.USDC);

async function mintTo(to: Address, amount: bigint) {
  await gw.send(gw.chain.accounts[0]!, {
    address: gw.chain.contracts.testUsd,
    abi: testUsdAbi,
    functionName: "mint",
    args: [to, amount],
  });
}

describe("GET /v1/rails", () => {
  it("shows each rail per asset it books: the ledger's clearing balance, the rail's own, and the difference", async () => {
    const listed = await railBalances();
    // Every rail that holds money outside the ledger, the internal ones left out; ETH beside an EVM rail's token.
    expect(listed.map((each) => `${each.rail}:${each.asset}`)).toEqual(
      expect.arrayContaining(["evm:USDC", "evm:ETH", "evm-down:USDC", "evm-down:ETH", "silent:USD"]),
    );
    expect(listed.some((each) => each.rail.startsWith("internal"))).toBe(false);
    const usdc = await entry("evm", "USDC");
    const [tokens, ledger] = await Promise.all([
      gw.tokenBalance(hotWallet()),
      gw.ledgerAccount(
        (await gw.app.settlement.accounts.railAccount({ kind: "clearing", rail: "evm", asset: assets.USDC }))!
          .ledgerAccountId,
      ),
    ]);
    expect(usdc).toEqual({
      object: "rail_balance",
      rail: "evm",
      kind: "evm",
      asset: "USDC",
      clearing_account: "acct_clearing_evm_usdc",
      ledger: {
        posted: formatUsdc(ledger.debitsPosted - ledger.creditsPosted),
        pending_in: formatUsdc(ledger.debitsPending),
        pending_out: formatUsdc(ledger.creditsPending),
      },
      rail_balance: formatUsdc(tokens),
      rail_error: null,
      difference: formatUsdc(tokens - (ledger.debitsPosted - ledger.creditsPosted)),
    });
    // The hot wallet's ETH, in gwei rounded down, beside the gas clearing account.
    const eth = await entry("evm", "ETH");
    const wei = await gw.chain.publicClient.getBalance({ address: hotWallet() });
    expect(minor(eth.rail_balance!, "ETH")).toBe(wei / 1_000_000_000n);
    expect(eth.clearing_account).toBe("acct_clearing_evm_eth");
  });

  it("shows a rail that cannot answer as null with a stable code, the others as ever", async () => {
    const down = await entry("evm-down", "USDC");
    expect(down).toMatchObject({
      rail_balance: null,
      difference: null,
      rail_error: { code: "rail_balance_unavailable" },
      // Its ledger side is still read: nothing booked there.
      ledger: { posted: "0.000000", pending_in: "0.000000", pending_out: "0.000000" },
    });
    expect(await entry("evm-down", "ETH")).toMatchObject({
      clearing_account: null,
      rail_balance: null,
      rail_error: { code: "rail_balance_unavailable" },
    });
    silent = true;
    try {
      const startedMs = Date.now();
      const listed = await railBalances();
      // Bounded: the silent rail's read is given up, and the answer comes all the same.
      expect(Date.now() - startedMs).toBeLessThan(15_000);
      expect(listed.find((each) => each.rail === "silent")).toMatchObject({
        asset: "USD",
        rail_balance: null,
        difference: null,
        rail_error: { code: "rail_balance_timeout" },
      });
      expect(listed.find((each) => each.rail === "evm" && each.asset === "USDC")?.rail_error).toBeNull();
    } finally {
      silent = false;
    }
  });
});

const payerIndex = 5;

/** Posts a capital booking on `rail` (the first chain's unless named). */
const bookCapital = (body: Record<string, unknown>, rail = "evm") =>
  operator("POST", `/v1/rails/${rail}/capital`, body);

describe("the operator's capital, booked so that the clearing account matches the rail", () => {
  it("tokens put into the hot wallet differ until booked; a deposit until swept; a payout and its gas move both alike", async () => {
    expect(await difference("USDC")).toBe(0n); // the demo's mint to the hot wallet was booked with it
    const ethBefore = await difference("ETH");
    // The demo's mints' gas is booked too: the wallet holds at most a gwei a transaction more than the ledger says
    // (each gas booked rounded up to the gwei), never less.
    expect(ethBefore).toBeGreaterThanOrEqual(0n);
    expect(ethBefore).toBeLessThan(100n);

    // The operator funds the hot wallet outside the gateway: the rail holds more than the ledger says, by that much.
    await mintTo(hotWallet(), 40_000_000n);
    expect(await difference("USDC")).toBe(40_000_000n);
    const reference = `mint-${randomBytes(8).toString("hex")}`;
    const booked = await bookCapital({
      asset: "USDC",
      direction: "in",
      amount: "40",
      reference,
      description: "the hot wallet's float",
    });
    expect(booked.status).toBe(201);
    expect(booked.body).toMatchObject({
      object: "rail_capital",
      rail: "evm",
      asset: "USDC",
      direction: "in",
      amount: "40.000000",
      reference,
      description: "the hot wallet's float",
      clearing_account: "acct_clearing_evm_usdc",
      capital_account: "acct_capital_evm_usdc",
    });
    expect(booked.body.id).toBe(
      `txn_${railCapitalLedgerId("evm", reference).toString(16).padStart(32, "0")}`,
    );
    expect(booked.headers["idempotent-replayed"]).toBeUndefined();
    expect(await difference("USDC")).toBe(0n);

    // A deposit credited is in the ledger before it is in the hot wallet: the rail shows less until it is swept.
    await mintTo(gw.chain.accounts[payerIndex]!.address, 12_500_000n);
    const invoice = await gw.call("POST", "/v1/invoices", {
      account: gw.app.demo!.merchant.id,
      asset: "USDC",
      amount: "12.5",
    });
    expect(invoice.status).toBe(201);
    await gw.send(gw.chain.accounts[payerIndex]!, {
      address: gw.chain.contracts.testUsd,
      abi: testUsdAbi,
      functionName: "transfer",
      args: [invoice.body.instructions.deposit_address as Address, 12_500_000n],
    });
    await gw.rail.depositWatcher()!.catchUp(20);
    expect((await gw.call("GET", `/v1/invoices/${invoice.body.id}`)).body.status).toBe("paid");
    expect(await difference("USDC")).toBe(-12_500_000n);
    await sweptAndFinal();
    expect(await difference("USDC")).toBe(0n);

    // A payout leaves both at once, its gas booked out of the ETH clearing account as the wallet paid it.
    const paid = await gw.call("POST", "/v1/payments", {
      amount: "7",
      asset: "USDC",
      source: { account: "acct_demo_customer" },
      destination: { type: "evm_address", address: gw.chain.accounts[6]!.address },
    });
    expect(paid.status).toBe(201);
    expect(paid.body).toMatchObject({ status: "succeeded", rail: "evm" });
    expect(await difference("USDC")).toBe(0n);
    expect(await difference("ETH")).toBe(ethBefore);
  });

  it("ETH put into the hot wallet differs until booked as capital in ETH", async () => {
    const before = await difference("ETH");
    await gw.chain.walletClient.sendTransaction({
      account: gw.chain.accounts[0]!,
      chain: gw.chain.chain,
      to: hotWallet(),
      value: parseEther("0.5"),
    });
    expect((await difference("ETH")) - before).toBe(500_000_000n);
    const booked = await bookCapital({
      asset: "ETH",
      direction: "in",
      amount: "0.5",
      reference: `eth-${randomBytes(8).toString("hex")}`,
    });
    expect(booked.status).toBe(201);
    expect(booked.body).toMatchObject({
      asset: "ETH",
      amount: "0.500000000",
      description: null,
      clearing_account: "acct_clearing_evm_eth",
      capital_account: "acct_capital_evm_eth",
    });
    expect(await difference("ETH")).toBe(before);
  });

  it("books a reference once: the same body answers the same booking, another is 409, nothing booked twice", async () => {
    const body = {
      asset: "USDC",
      direction: "out",
      amount: "2.5",
      reference: `out-${randomBytes(8).toString("hex")}`,
    };
    const first = await bookCapital(body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ direction: "out", amount: "2.500000" });
    const after = await difference("USDC");
    const transfers = await gw.ledgerTransferCount();
    const again = await bookCapital(body);
    expect(again.status).toBe(201);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(first.body);
    for (const other of [
      { ...body, amount: "2.6" },
      { ...body, direction: "in" },
      { ...body, asset: "ETH" },
      { ...body, description: "another" },
    ]) {
      const reused = await bookCapital(other);
      expect([reused.status, reused.body.error.code, reused.body.error.param]).toEqual([
        409,
        "capital_reference_reused",
        "reference",
      ]);
    }
    expect(await gw.ledgerTransferCount()).toBe(transfers);
    expect(await difference("USDC")).toBe(after);
    // The same reference on another rail is another booking.
    const elsewhere = await bookCapital({ ...body, direction: "in" }, "evm-down");
    expect(elsewhere.status).toBe(201);
    expect(elsewhere.body).toMatchObject({ rail: "evm-down", direction: "in", reference: body.reference });
    expect(elsewhere.body.id).not.toBe(first.body.id);
  });

  it("refuses what is not a booking with a stable code, and writes nothing", async () => {
    const transfers = await gw.ledgerTransferCount();
    const valid = { asset: "USDC", direction: "in", amount: "1", reference: "refused" };
    const cases: [string, Record<string, unknown>, number, string, string | undefined][] = [
      ["evm-nowhere", valid, 404, "rail_not_found", undefined],
      ["internal-usdc", valid, 404, "rail_not_found", undefined],
      ["EVM", valid, 400, "parameter_invalid", "rail"],
      ["evm", { ...valid, asset: "DOGE" }, 400, "unknown_asset", "asset"],
      ["evm", { ...valid, asset: "BTC" }, 400, "asset_mismatch", "asset"],
      ["evm", { ...valid, amount: "0" }, 400, "amount_not_positive", "amount"],
      ["evm", { ...valid, amount: "1.0000001" }, 400, "amount_too_precise", "amount"],
      ["evm", { ...valid, amount: "-1" }, 400, "amount_not_positive", "amount"],
      // The most the ledger stores in one amount, on top of what the clearing account holds: beyond its totals.
      ["evm", { ...valid, amount: "9223372036854.775807" }, 400, "amount_too_large", "amount"],
      ["evm", { ...valid, direction: "sideways" }, 400, "parameter_invalid", "direction"],
      ["evm", { asset: "USDC", direction: "in", amount: "1" }, 400, "parameter_missing", "reference"],
      ["evm", { ...valid, reference: "" }, 400, "parameter_invalid", "reference"],
      ["evm", { ...valid, memo: "x" }, 400, "parameter_unknown", "memo"],
      // More out than the clearing account holds beyond its holds: the customers' money stays booked there.
      ["evm", { ...valid, direction: "out", amount: "1000000000" }, 402, "insufficient_liquidity", "amount"],
    ];
    for (const [rail, body, status, code, param] of cases) {
      const refused = await bookCapital(body, rail);
      expect([rail, body, refused.status, refused.body.error.code, refused.body.error.param]).toEqual([
        rail,
        body,
        status,
        code,
        param,
      ]);
    }
    expect(await gw.ledgerTransferCount()).toBe(transfers);
  });

  it("answers only the operator's credential on both routes", async () => {
    const transfers = await gw.ledgerTransferCount();
    const listed = await operator("GET", "/v1/rails", undefined, gw.key);
    expect([listed.status, listed.body.error.code]).toEqual([403, "operator_only"]);
    const booked = await operator(
      "POST",
      "/v1/rails/evm/capital",
      { asset: "USDC", direction: "in", amount: "1", reference: "tenant" },
      gw.key,
    );
    expect([booked.status, booked.body.error.code]).toEqual([403, "operator_only"]);
    const wrong = await operator(
      "GET",
      "/v1/rails",
      undefined,
      `op_${randomBytes(32).toString("base64url")}`,
    );
    expect([wrong.status, wrong.body.error.code]).toEqual([401, "api_key_invalid"]);
    expect(await gw.ledgerTransferCount()).toBe(transfers);
  });
});

/** Sweep passes until every deposit due is swept and its sweep final (its gas booked), mining between passes. */
async function sweptAndFinal(): Promise<void> {
  const deps = { db: gw.app.db, ledger: gw.app.ledger, accounts: gw.app.settlement.accounts };
  for (let pass = 0; pass < 5; pass += 1) {
    await sweepDepositsOnce(deps, gw.rail, gw.chain.chain.id);
    const [open] = await gw.app.db.query<{ due: number; open: number }>(
      `SELECT (SELECT count(*)::int FROM evm_deposits WHERE chain_id = $1 AND sweep_due_at <= now()) AS due,
              (SELECT count(*)::int FROM evm_sweeps WHERE chain_id = $1 AND done_at IS NULL) AS open`,
      [gw.chain.chain.id],
    );
    if (open!.due === 0 && open!.open === 0) return;
    await gw.chain.networkHelpers.mine(1);
  }
  throw new Error("the deposit was not swept after 5 passes");
}
