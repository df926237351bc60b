import { x402HTTPClient } from "@x402/fetch";
import Fastify from "fastify";
import {
  type Address,
  BaseError,
  createPublicClient,
  custom,
  type Hex,
  HttpRequestError,
  keccak256,
  parseSignature,
  stringToHex,
  TimeoutError,
} from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvmRail, testUsdAbi } from "../../adapters/evm/index.ts";
import { transferWithAuthorizationTypedData } from "../../adapters/evm/typed-data.ts";
import { assets, divCeil, type Logger, silentLogger } from "../../core/index.ts";
import type { Db } from "../../gateway/db/index.ts";
import { derivedLedgerId } from "../../gateway/ids/index.ts";
import { switchyardPaywall } from "../../gateway/paywall/index.ts";
import { sendGasPassOnce } from "../../gateway/settlement/index.ts";
import {
  type AuthorizationBatchSender,
  type BatchItem,
  createBatchSettler,
  splitEvenlyRemainderToFirst,
} from "../../gateway/x402/batch.ts";
import type { X402Chain } from "../../gateway/x402/chains.ts";
import { type FacilitatorRequest, facilitatorSettle } from "../../gateway/x402/facilitator.ts";
import { createX402Deps, createX402Scheme } from "../../gateway/x402/index.ts";
import { type ReconcileSettings, reconcileX402 } from "../../gateway/x402/reconcile.ts";
import { createSingleSettler, type SettleResult, type X402Settler } from "../../gateway/x402/settle.ts";
import { logsSettledS, verifiedMarginBlocks } from "../../gateway/x402/spends.ts";
import { type CreditTarget, claim, record, sentAuthorization } from "../../gateway/x402/store.ts";
import { validBeforeSkewS, validForMaxS } from "../../gateway/x402/verify.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import {
  anotherProcessRail,
  chainGettingLogs,
  type Gateway,
  mintedPayer,
  officialX402Client,
  signatureOver,
  signedX402Payment,
  submitCopiedAuthorization,
  x402BatchGateway,
} from "./support.ts";

let gw: Gateway;
let settlerAddress: Address;
let chain: X402Chain;
const payerFunds = 1_000_000n;

beforeAll(async () => {
  ({ gw, settlerAddress, chain } = await x402BatchGateway());
});
afterAll(async () => {
  await setAutomine(true);
  await gw?.app.close();
});

const setAutomine = (on: boolean) => gw?.setAutomine(on);

/** The payment's authorization submitted first by a stranger who copied it (submitCopiedAuthorization). */
const submitCopy = (p: { claimed: Pick<Payment["claimed"], "authorization" | "signature"> }) =>
  submitCopiedAuthorization(gw, chain.token, p.claimed);

/** One pass over the test's chain, every `submitted` row taken however recent. */
const reconcile = (settings: Partial<ReconcileSettings> = {}, logger: Logger = silentLogger, on = chain) =>
  reconcileX402(
    { db: gw.app.db, settlement: gw.app.settlement, chains: { chains: [on] }, logger },
    { submittedQuietMs: 0, ...settings },
  );

/** A new payer (named: the same key every run) holding `funds` TestUSD. */
const newPayer = (name: string, funds = payerFunds) =>
  mintedPayer(gw, `x402 reconcile test payer ${name}`, funds);

type Payer = Awaited<ReturnType<typeof newPayer>>;

/** An authorization's window: fixed, so that a transaction's calldata, and so its gas, is the same every run. */
const validBefore = 2_000_000_000n;

/** The payer's signed payment of `value` to the hot wallet (signed by `signer`: another makes a bad one). */
const payment = (payer: Payer, value: bigint, signer: Payer = payer, window = { validBefore }) =>
  signedX402Payment(gw, chain, payer, value, {
    signer,
    nonce: keccak256(stringToHex(`reconcile nonce ${payer.address} ${value}`)),
    window: { validAfter: 0n, validBefore: window.validBefore },
    description: "x402 reconcile test",
  });

type Payment = Awaited<ReturnType<typeof payment>>;

async function claimed(p: Payment): Promise<Payment> {
  expect(await claim(gw.app.db, chain, p.claimed.authorization, p.claimed.credit)).toBe(true);
  return p;
}

async function rowOf(p: Payment) {
  const [row] = await gw.app.db.query<{
    status: string;
    tx_hash: string | null;
    failure: string | null;
    invoice_id: string | null;
    spent_block: string | null;
    spent_tx_hash: string | null;
  }>(
    `SELECT status, tx_hash, failure, invoice_id, spent_block::text AS spent_block, spent_tx_hash
     FROM x402_authorizations
     WHERE payer = $1 AND nonce = $2`,
    [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
  );
  return row ?? null;
}

/** The row's outcome forgotten: `submitted` with its transaction, as a failed record leaves it. */
async function forceSubmitted(p: Payment) {
  await gw.app.db.query(
    "UPDATE x402_authorizations SET status = 'submitted', spent_block = NULL WHERE payer = $1 AND nonce = $2",
    [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
  );
}

/** The app's settlement, its ledger refusing every gas booking (payments.feePaid). */
function settlementWithoutGas() {
  const ledger = gw.app.settlement.ledger;
  const failing = new Proxy(ledger, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== "createTransfers" || typeof value !== "function") return value;
      return async (transfers: readonly { code: number }[], ...rest: unknown[]) => {
        if (transfers.some((t) => t.code === 9 /* payments.feePaid */))
          throw new Error("the ledger is unavailable (test)");
        return value.call(target, transfers, ...rest);
      };
    },
  });
  return { ...gw.app.settlement, ledger: failing };
}

const feesBooked = () => gw.gasFeesBooked();

async function gasGweiOf(txHash: Hex): Promise<bigint> {
  const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash });
  return divCeil(receipt.gasUsed * receipt.effectiveGasPrice, 1_000_000_000n);
}

const singleGasId = (txHash: string) =>
  derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}`, "x402-gas");
const batchGasId = (txHash: string, invoiceId: string) =>
  derivedLedgerId(`${chain.chainId}:${txHash.toLowerCase()}:${invoiceId}`, "x402-batch-gas");

function notOk(result: SettleResult) {
  if (result.ok) throw new Error(`expected no settlement, got transaction ${result.transaction}`);
  return result;
}

// First: the paywall checks an authorization's window by the gateway's clock, the rail by the chain's, which the tests
// below move ahead of it.
describe("an x402 payment the rail refused before sending it, at a paywall", () => {
  /** What a payment's header carries: its signature and authorization, as the payer signed them. */
  type SentPayment = {
    signature: Hex;
    authorization: {
      from: Address;
      to: Address;
      value: string;
      validAfter: string;
      validBefore: string;
      nonce: Hex;
    };
  };

  /**
   * A paywall at `path` of a new merchant account, served by a shop whose route spends the payer's balance while it
   * serves the first request (the rail's simulation then refuses its settlement: insufficient_funds), and the payment
   * of a new payer (`name`) sent there and refused so; `others`: more paywalls of the same account and price, each
   * served as other goods. The caller closes the shop. `served()`: the requests served so far. `refusing`: told the
   * payment as the first request is served, its settlement about to be refused. `validAfter`: the payment's, signed
   * again by the payer (the official client signs its own, its now less 600 s).
   */
  async function refusedAtPaywall(
    name: string,
    path: string,
    others: readonly string[] = [],
    refusing?: (sent: SentPayment, payer: Payer) => void,
    validAfter?: bigint,
  ) {
    const seller = await gw.merchantAccount(`seller of a payment refused before sending, ${name}`);
    for (const at of [path, ...others])
      await gw.x402Paywall(at, `a report of a payment refused before sending, ${name}`, seller.id);
    const payer = await newPayer(`refused at a paywall, ${name}`, 10_000n);
    let served = 0;
    let sending: SentPayment | null = null;
    const shop = Fastify();
    await shop.register(switchyardPaywall, { paywall: gw.app.paywalls.forTenant(gw.app.demo!.tenantId) });
    shop.get(path, async () => {
      served += 1;
      if (served === 1) {
        // The payer spends its balance while its request is served: the rail's simulation refuses the settlement.
        await gw.chain.networkHelpers.setBalance(payer.address, 10n ** 18n);
        await gw.send(payer, {
          address: chain.token,
          abi: testUsdAbi,
          functionName: "transfer",
          args: [gw.chain.accounts[0]!.address, 10_000n],
        });
        refusing?.(sending!, payer);
      }
      return { report: "the goods" };
    });
    for (const at of others)
      shop.get(at, async () => {
        served += 1;
        return { report: "other goods at the same price" };
      });
    try {
      const base = await shop.listen({ port: 0, host: "127.0.0.1" });
      const seed = `x402 reconcile test payer refused at a paywall, ${name}`;
      const client = new x402HTTPClient(officialX402Client(gw, keccak256(stringToHex(seed))));
      const challenge = await fetch(`${base}${path}`);
      expect(challenge.status).toBe(402);
      const required = client.getPaymentRequiredResponse(
        (header) => challenge.headers.get(header),
        await challenge.json(),
      );
      let header = client.encodePaymentSignatureHeader(await client.createPaymentPayload(required));
      const signed = JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
        payload: SentPayment;
      };
      if (validAfter !== undefined) {
        const a = { ...signed.payload.authorization, validAfter: validAfter.toString() };
        const signature = await payer.signTypedData(
          transferWithAuthorizationTypedData(
            { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
            { ...a, value: BigInt(a.value), validAfter, validBefore: BigInt(a.validBefore) },
          ),
        );
        signed.payload = { signature, authorization: a };
        header = { ...header, "PAYMENT-SIGNATURE": Buffer.from(JSON.stringify(signed)).toString("base64") };
      }
      const sent = signed.payload;
      sending = sent;
      const refused = await fetch(`${base}${path}`, { headers: header });
      expect(refused.status).toBe(402);
      expect(((await refused.json()) as { error: string }).error).toBe("insufficient_funds");
      return { shop, base, header, sent, payer, served: () => served };
    } catch (error) {
      await shop.close();
      throw error;
    }
  }

  /**
   * The payment `sent` mined by another (minedByAnother) in block `minedIn`, the one before it stamped before the
   * payment's validBefore (a node one block behind reads its nonce unused there, its window open). `pastWindow`: a
   * clock at its validBefore.
   */
  async function minedJustBeforeItsWindow(payer: Payer, sent: SentPayment) {
    const copyTx = await minedByAnother(payer, sent);
    const minedIn = (await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx })).blockNumber;
    const validBefore = BigInt(sent.authorization.validBefore);
    const behind = await gw.chain.publicClient.getBlock({ blockNumber: minedIn - 1n });
    expect(behind.timestamp).toBeLessThan(validBefore);
    return { minedIn, pastWindow: () => Number(validBefore) * 1000 };
  }

  /**
   * `test` run on the chain as it is now, its blocks and clock taken back after (the tests that follow read the chain's
   * blocks from its start), given `refuse`: refusedAtPaywall, whose shop is closed after too.
   */
  async function onChainTakenBack(test: (refuse: typeof refusedAtPaywall) => Promise<void>) {
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    let shop: Awaited<ReturnType<typeof refusedAtPaywall>>["shop"] | undefined;
    try {
      await test(async (...args) => {
        const refused = await refusedAtPaywall(...args);
        shop = refused.shop;
        return refused;
      });
    } finally {
      await shop?.close();
      await snapshot.restore();
    }
  }

  /**
   * The payment `header` with its authorization signed by a new payer (`name`) instead: the same public terms, a
   * signature not the payer's.
   */
  async function signedByStranger(name: string, header: Record<string, string>) {
    const stranger = await newPayer(name, 0n);
    const decoded = JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
      payload: SentPayment;
    };
    const made = {
      ...decoded,
      payload: {
        ...decoded.payload,
        signature: await signatureOver(stranger, chain, decoded.payload.authorization),
      },
    };
    return { "PAYMENT-SIGNATURE": Buffer.from(JSON.stringify(made)).toString("base64") };
  }

  /** The verdict of a payment sent again refused as expired: final, the token takes it no more. */
  const refusedExpired = {
    kind: "refused",
    refusal: { code: "invalid_exact_evm_payload_authorization_valid_before" },
  };

  /** The verdict of a payment sent again answered pending (unexpected_settle_error), saying `why`. */
  const pendingFor = (why: RegExp) => ({
    kind: "refused",
    refusal: { code: "unexpected_settle_error", message: expect.stringMatching(why) },
  });

  /** The payment `sent` mined by another (submitCopy), its payer's balance minted back first: the transaction. */
  async function minedByAnother(payer: { address: Address }, sent: SentPayment): Promise<Hex> {
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, 10_000n],
    });
    const a = sent.authorization;
    const copyTx = await submitCopy({
      claimed: {
        signature: sent.signature,
        authorization: {
          ...a,
          value: BigInt(a.value),
          validAfter: BigInt(a.validAfter),
          validBefore: BigInt(a.validBefore),
        },
      },
    });
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    return copyTx;
  }

  /**
   * The first block of the gateway's reads of the token's AuthorizationUsed of `payer` (its node's client, shared with
   * the test's) while `run` runs, what `run` gave, and how many blocks it read by number (getBlock({blockNumber}): the
   * latest, read by tag, is read too by the gateway's periodic passes on the same client, reconciliation's head and
   * the sweeps' base fee, which may fall in `run`).
   */
  async function logsReadFrom<T>(
    payer: Address,
    run: () => Promise<T>,
  ): Promise<{ result: T; from: bigint[]; blocksRead: number }> {
    type GetLogs = (query: { args?: { authorizer?: Address }; fromBlock?: bigint }) => Promise<unknown>;
    type GetBlock = (query?: { blockNumber?: bigint }) => Promise<unknown>;
    const client = gw.chain.publicClient as unknown as { getLogs: GetLogs; getBlock: GetBlock };
    const { getLogs, getBlock } = client;
    const from: bigint[] = [];
    let blocksRead = 0;
    client.getLogs = (query) => {
      const authorizer = query.args?.authorizer;
      if (authorizer !== undefined && authorizer.toLowerCase() === payer.toLowerCase())
        from.push(query.fromBlock ?? -1n);
      return getLogs(query);
    };
    client.getBlock = (query) => {
      if (query?.blockNumber !== undefined) blocksRead += 1;
      return getBlock(query);
    };
    try {
      const result = await run();
      return { result, from, blocksRead };
    } finally {
      client.getLogs = getLogs;
      client.getBlock = getBlock;
    }
  }

  /**
   * The search read the token's logs once, from the block the paywall's verify read the authorization's nonce unused
   * at (its row's verified_block: the simulation's), less the chain's confirmations but one (one here:
   * x402BatchGateway's EVM_CONFIRMATIONS) and verifiedMarginBlocks (that block may be later than the simulation's
   * state: a head read after it, or by a node ahead of the one simulating), whatever block the gateway saw as it
   * refused it, and so from no later than `minedIn`.
   */
  async function searchedFromVerified(from: bigint[], a: SentPayment["authorization"], minedIn: bigint) {
    const [row] = await gw.app.db.query<{ verified_block: string | null }>(
      "SELECT verified_block::text AS verified_block FROM x402_unsent_owed WHERE payer = $1 AND nonce = $2",
      [a.from.toLowerCase(), a.nonce.toLowerCase()],
    );
    expect(row?.verified_block ?? null).not.toBeNull();
    const confirmations = 1n;
    const start = BigInt(row!.verified_block!) + 1n - confirmations - verifiedMarginBlocks;
    expect(from).toEqual([start > 0n ? start : 0n]);
    expect(from[0]!).toBeLessThanOrEqual(minedIn);
  }

  it("and that someone else mined serves the same payment sent again there, once", async () => {
    // Another paywall of the same account and price too.
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then mined by another",
      "/refused-then-mined",
      ["/refused-elsewhere"],
    );
    try {
      const a = sent.authorization;
      const copyTx = await minedByAnother(payer, sent);
      // The payer, nonce and value are public in the token's logs: another's signature over them is not the payer's,
      // and is neither served nor answered pending, on the resource's terms or on others (terms moved since,
      // owedOnOtherTerms).
      const stranger = await newPayer("watching the hot wallet for a refused payment", 0n);
      const forged = await signatureOver(stranger, chain, a);
      const decoded = JSON.parse(Buffer.from(header["PAYMENT-SIGNATURE"]!, "base64").toString()) as {
        accepted: { maxTimeoutSeconds: number };
        payload: { signature: Hex };
      };
      const refusedForged = async () => {
        for (const accepted of [
          decoded.accepted,
          { ...decoded.accepted, maxTimeoutSeconds: decoded.accepted.maxTimeoutSeconds + 1 },
        ]) {
          const made = { ...decoded, accepted, payload: { ...decoded.payload, signature: forged } };
          const answer = await fetch(`${base}/refused-then-mined`, {
            headers: { "PAYMENT-SIGNATURE": Buffer.from(JSON.stringify(made)).toString("base64") },
          });
          expect(answer.status).toBe(402);
          expect(((await answer.json()) as { error: string }).error).not.toBe("unexpected_settle_error");
        }
      };
      // Mined, not credited yet (the watcher has not read it): sent again, it is pending, not a nonce used, which an
      // x402 client takes as final and pays again with a new authorization.
      const early = await fetch(`${base}/refused-then-mined`, { headers: header });
      expect(early.status).toBe(402);
      expect(((await early.json()) as { error: string }).error).toBe("unexpected_settle_error");
      const servedEarly = served();
      await refusedForged();
      expect(served()).toBe(servedEarly);
      await gw.rail.depositWatcher()!.catchUp(20);
      const [invoice] = await gw.app.db.query<{ id: string; status: string }>(
        `SELECT i.id, i.status FROM invoices i JOIN evm_deposits d ON d.reference = i.id
         WHERE d.auth_from = $1 AND d.auth_nonce = $2`,
        [a.from.toLowerCase(), a.nonce.toLowerCase()],
      );
      expect(invoice).toMatchObject({ status: "paid" });
      // A copy mined before it and removed by a reorg, its reversal not recorded yet: its receipt, read first, names a
      // transaction the node does not know, which is not this one: the receipts after it are read, and this one
      // served.
      await gw.app.db.query(
        `INSERT INTO invoice_receipts (invoice_id, key, amount, payer, late, evidence, received_at)
         SELECT invoice_id, key || ':removed', amount, payer, late,
                jsonb_set(evidence, '{txHash}', to_jsonb($2::text)), received_at - interval '1 minute'
         FROM invoice_receipts WHERE invoice_id = $1`,
        [invoice!.id, keccak256(stringToHex("a copy a reorg removed"))],
      );
      const servedBefore = served();
      // Owed where it was refused, not at another paywall of the same account and price.
      expect((await fetch(`${base}/refused-elsewhere`, { headers: header })).status).toBe(402);
      expect(served()).toBe(servedBefore);
      // Credited now: a made-up signature is still not the payer's.
      await refusedForged();
      expect(served()).toBe(servedBefore);
      // Before: refused as a nonce already used, though the payer had paid for it. Two copies at once: one is served.
      const copies = await Promise.all([
        fetch(`${base}/refused-then-mined`, { headers: header }),
        fetch(`${base}/refused-then-mined`, { headers: header }),
      ]);
      expect(copies.map((copy) => copy.status).sort()).toEqual([200, 402]);
      const again = copies.find((copy) => copy.status === 200)!;
      expect(await again.json()).toEqual({ report: "the goods" });
      expect(served()).toBe(servedBefore + 1);
      const receipt = JSON.parse(
        Buffer.from(again.headers.get("payment-response")!, "base64").toString(),
      ) as { success: boolean; transaction: string };
      expect(receipt).toMatchObject({ success: true, transaction: copyTx });
      // Once: the same payment sent again once more is refused as used.
      const third = await fetch(`${base}/refused-then-mined`, { headers: header });
      expect(third.status).toBe(402);
      expect(served()).toBe(servedBefore + 1);
    } finally {
      await shop.close();
    }
  });

  it("and whose nonce the payer then spent on other terms is refused as used when sent again, not answered pending", async () => {
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then its nonce spent elsewhere",
      "/refused-then-spent-elsewhere",
    );
    try {
      const a = sent.authorization;
      // Recorded owed: the refusal below is the search's, not a row never written.
      const [marked] = await gw.app.db.query<{ owed: boolean }>(
        "SELECT owed FROM x402_unsent_owed WHERE payer = $1 AND nonce = $2",
        [payer.address.toLowerCase(), a.nonce.toLowerCase()],
      );
      expect(marked).toMatchObject({ owed: true });
      // The payer's own authorization of the same nonce to another address, for another amount, mined: the invoice
      // bound to the nonce is never paid, and the payment sent again can never be.
      const elsewhere = {
        from: payer.address,
        to: gw.chain.accounts[5]!.address,
        value: 1n,
        validAfter: BigInt(a.validAfter),
        validBefore: BigInt(a.validBefore),
        nonce: a.nonce,
      };
      await gw.send(gw.chain.accounts[0]!, {
        address: chain.token,
        abi: testUsdAbi,
        functionName: "mint",
        args: [payer.address, 1n],
      });
      const signature = await payer.signTypedData(
        transferWithAuthorizationTypedData(
          { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
          elsewhere,
        ),
      );
      const otherTx = await submitCopy({ claimed: { authorization: elsewhere, signature } });
      expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: otherTx })).status).toBe(
        "success",
      );
      // Not answered pending ("send the same payment again shortly") once the logs name that spend, however few blocks
      // past it: nothing the payer sent can pay it now.
      const again = await fetch(`${base}/refused-then-spent-elsewhere`, { headers: header });
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("invalid_exact_evm_nonce_already_used");
      expect(served()).toBe(1);
    } finally {
      await shop.close();
    }
  });

  it("and mined more than 1,000 blocks before it is sent again, not credited yet, is answered pending in a few reads", async () => {
    // The 1,100 blocks below taken back after: the tests that follow read the chain's blocks from its start.
    await onChainTakenBack(async (refuse) => {
      // Its verify's block more than verifiedMarginBlocks into the chain: the search's start is not block 0.
      await gw.chain.networkHelpers.mine(2 * Number(verifiedMarginBlocks));
      const refused = await refuse("then mined long before sent again", "/refused-then-mined-long-ago");
      const { base, header, sent, payer, served } = refused;
      const copyTx = await minedByAnother(payer, sent);
      const minedIn = (await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx })).blockNumber;
      // The watcher behind (an outage, or a chain's confirmations) while the chain moves on past the authorization's
      // window: its transfer is searched for in the authorization's own blocks, found, and the payment sent again is
      // answered pending (a nonce already used would be final to an x402 client, which signs anew and pays twice).
      await gw.chain.networkHelpers.mine(1_100);
      const {
        result: again,
        from,
        blocksRead,
      } = await logsReadFrom(payer.address, () =>
        fetch(`${base}/refused-then-mined-long-ago`, { headers: header }),
      );
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
      // One read of logs, from the row's block; of blocks by number, the authorization's window shut since, one per
      // halving of the searched blocks for its last.
      expect(from[0]!).toBeGreaterThan(0n);
      const searched = (await gw.chain.publicClient.getBlockNumber({ cacheTime: 0 })) - (from[0] ?? 0n);
      expect(blocksRead).toBeLessThanOrEqual(1 + searched.toString(2).length);
      await searchedFromVerified(from, sent.authorization, minedIn);
      expect(served()).toBe(1);
    });
  });
  it("and mined a few blocks before its row was written (the mining why the rail refused), is answered pending when sent again", async () => {
    // Another mines the authorization, and 10 blocks follow (a fast chain, one confirmation), after the rail's
    // simulation refused it and before the paywall writes its row: nothing the gateway reads after its verify starts
    // the search. Before (a head read as the row was written), the search started past the block that mined it, and
    // the payer who paid heard a final nonce already used.
    type SimulateContract = (call: { functionName: string; args?: readonly unknown[] }) => Promise<unknown>;
    const client = gw.chain.publicClient as unknown as { simulateContract: SimulateContract };
    const simulateContract = client.simulateContract;
    let armed: { sent: SentPayment; payer: Payer } | null = null;
    let minedIn: bigint | null = null;
    // Only the rail's simulation of this payer's transfer, once armed (as its request is served): its answer kept,
    // the copy mined before it is given.
    client.simulateContract = async (call) => {
      const ours =
        armed !== null && String(call.args?.[0]).toLowerCase() === armed.payer.address.toLowerCase();
      if (!ours) return simulateContract(call);
      const { sent, payer } = armed!;
      armed = null;
      try {
        return await simulateContract(call);
      } finally {
        const copyTx = await minedByAnother(payer, sent);
        minedIn = (await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx })).blockNumber;
        await gw.chain.networkHelpers.mine(10);
      }
    };
    try {
      const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
        "then mined before its row was written",
        "/refused-mined-before-marked",
        [],
        (sent, payer) => {
          armed = { sent, payer };
        },
      );
      client.simulateContract = simulateContract;
      try {
        expect(minedIn).not.toBeNull();
        const { result: again, from } = await logsReadFrom(payer.address, () =>
          fetch(`${base}/refused-mined-before-marked`, { headers: header }),
        );
        expect(again.status).toBe(402);
        expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
        await searchedFromVerified(from, sent.authorization, minedIn!);
        expect(served()).toBe(1);
      } finally {
        await shop.close();
      }
    } finally {
      client.simulateContract = simulateContract;
    }
  });

  it("and mined, is answered pending when sent again though a node behind the first reads its nonce unused", async () => {
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then mined, read through nodes apart",
      "/refused-then-mined-nodes-apart",
    );
    type ReadContract = (call: { functionName: string; args?: readonly unknown[] }) => Promise<unknown>;
    type GetBlock = (query?: { blockTag?: string; blockNumber?: bigint }) => Promise<{ number: bigint }>;
    const client = gw.chain.publicClient as unknown as { readContract: ReadContract; getBlock: GetBlock };
    const { readContract, getBlock } = client;
    try {
      await minedByAnother(payer, sent);
      // A load balancer's nodes a block apart: once one read the payer's nonce used, the next read asks one that has
      // not its block yet — its nonce unused, its latest block the one before, no log of it. Before, the nonce verify
      // read used was read again, unused, and the payer who paid heard a final nonce already used.
      let seenUsed = false;
      client.readContract = async (call) => {
        const ofPayer =
          call.functionName === "authorizationState" &&
          String(call.args?.[0]).toLowerCase() === payer.address.toLowerCase();
        if (ofPayer && seenUsed) return false;
        const answer = await readContract(call);
        if (ofPayer && answer === true) seenUsed = true;
        return answer;
      };
      let behind = 0;
      client.getBlock = async (query) => {
        if (!seenUsed || query?.blockTag !== "latest") return getBlock(query);
        behind += 1;
        const { number } = await getBlock(query);
        return getBlock({ blockNumber: number - 1n });
      };
      const again = await fetch(`${base}/refused-then-mined-nodes-apart`, { headers: header });
      client.readContract = readContract;
      client.getBlock = getBlock;
      expect(seenUsed).toBe(true);
      expect(behind).toBeGreaterThan(0);
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
      expect(served()).toBe(1);
    } finally {
      client.readContract = readContract;
      client.getBlock = getBlock;
      await shop.close();
    }
  });

  /**
   * The verdict of the paywall's x402 scheme on the payment `header` sent again at `path` of `base`, the gateway's
   * scheme but for its clock, `nowMs`, and the client it reads the chain with, `publicClient` (the gateway's unless
   * given): the paywall and tenant those of the request it is owed to (`sent`'s row). `on`: the rail's confirmations
   * (the gateway's unless given), whether its chain mines on demand (not unless given), and the paywall's price now
   * (the one paid unless given).
   */
  async function sentAgainAt(
    at: { base: string; path: string; header: Record<string, string>; sent: SentPayment },
    nowMs: () => number,
    publicClient: X402Chain["publicClient"] = chain.publicClient,
    on: { confirmations?: number; minesOnDemand?: boolean; price?: bigint } = {},
  ) {
    const a = at.sent.authorization;
    const [row] = await gw.app.db.query<{ paywall_id: string; tenant_id: string }>(
      "SELECT paywall_id, tenant_id FROM x402_unsent_owed WHERE payer = $1 AND nonce = $2",
      [a.from.toLowerCase(), a.nonce.toLowerCase()],
    );
    expect(row).toBeDefined();
    const deps = createX402Deps({
      db: gw.app.db,
      settlement: gw.app.settlement,
      chains: [
        {
          ...chain,
          publicClient,
          confirmations: on.confirmations ?? chain.confirmations,
          minesOnDemand: on.minesOnDemand ?? chain.minesOnDemand,
        },
      ],
      logger: silentLogger,
      nowMs,
    });
    const signature = at.header["PAYMENT-SIGNATURE"]!;
    const { accepted } = JSON.parse(Buffer.from(signature, "base64").toString()) as {
      accepted: { amount: string };
    };
    return createX402Scheme(deps).verify(
      {
        tenantId: row!.tenant_id,
        paywallId: row!.paywall_id,
        accountId: "",
        service: "reports",
        description: "a report",
        mimeType: "application/json",
      },
      [{ rail: "evm", price: { asset: assets.USDC, amount: on.price ?? BigInt(accepted.amount) } }],
      { method: "GET", url: `${at.base}${at.path}`, headers: { "payment-signature": signature } },
    );
  }

  /** The gateway's node as one behind it would answer, at `block`: what it reads of the latest is read there. */
  function nodeAt(block: bigint): X402Chain["publicClient"] {
    type Query = { blockNumber?: bigint; blockHash?: Hex; blockTag?: string };
    const latest = (query: Query = {}) =>
      query.blockNumber === undefined && query.blockHash === undefined && query.blockTag !== "pending"
        ? { ...query, blockTag: undefined, blockNumber: block }
        : query;
    const client = chain.publicClient as unknown as Record<string, (query?: Query) => unknown>;
    return new Proxy(client, {
      get(target, property, receiver) {
        if (property === "getBlockNumber") return async () => block;
        if (property === "getBlock" || property === "readContract" || property === "call")
          return (query?: Query) => target[property]!(latest(query));
        return Reflect.get(target, property, receiver);
      },
    }) as unknown as X402Chain["publicClient"];
  }

  it("and mined just before its validBefore, sent again past it by the gateway's clock, is answered pending though a node behind reads its nonce unused", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-then-mined-as-its-window-shut";
      const refused = await refuse("then mined as its window shut", path);
      const { sent, payer, served } = refused;
      // The gateway's clock past its validBefore: verify refuses it as expired. The chain's time is not, at the block
      // that mined it nor at the one before, which a node one block behind (a load balancer's) takes for its latest:
      // its nonce unused there. Before, that read was final: the payer who paid heard its window shut, signed a new
      // payment and paid twice.
      const { minedIn, pastWindow } = await minedJustBeforeItsWindow(payer, sent);
      const again = await sentAgainAt({ ...refused, path }, pastWindow, nodeAt(minedIn - 1n));
      expect(again).toMatchObject({ kind: "refused", refusal: { code: "unexpected_settle_error" } });
      // The node caught up: its nonce used at the latest block, its transfer found from the row's verified block up to
      // that one, not credited yet: pending as well.
      const caughtUp = await sentAgainAt({ ...refused, path }, pastWindow);
      expect(caughtUp).toMatchObject(pendingFor(/spent, not yet credited/));
      expect(served()).toBe(1);
    });
  });

  it("and not mined, sent again past its validBefore by the gateway's clock, is answered pending until the chain's clock is past it too, then refused as expired", async () => {
    // The chain's clock moved past the window below, and its blocks, taken back after.
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-window-shut-here";
      const refused = await refuse("its window shut by the gateway's clock", path);
      const validBefore = BigInt(refused.sent.authorization.validBefore);
      const pastWindow = () => Number(validBefore) * 1000;
      // Unused at a block before its validBefore: whoever holds the authorization may still mine it, which pays the
      // invoice bound to its nonce.
      expect((await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp).toBeLessThan(
        validBefore,
      );
      const early = await sentAgainAt({ ...refused, path }, pastWindow);
      expect(early).toMatchObject(pendingFor(/not mined by block/));
      // Unused at a block whose time is its validBefore: the token takes it no more, and the refusal is final.
      await gw.chain.networkHelpers.time.increaseTo(validBefore);
      expect((await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp).toBe(validBefore);
      const late = await sentAgainAt({ ...refused, path }, pastWindow);
      expect(late).toMatchObject(refusedExpired);
      expect(refused.served()).toBe(1);
    });
  });

  it("and mined just before its validBefore, sent again past it at a price raised since, is answered pending though a node behind reads its nonce unused", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-then-mined-price-raised";
      const refused = await refuse("then mined, its price raised since", path);
      const { sent, payer, served } = refused;
      // The paywall's price raised since: its `accepted` is not the requirements now, and it is answered as a request
      // owed on other terms (owedOnOtherTerms), which asks verify nothing of its window. The gateway's clock past its
      // validBefore, a node one block behind the one that mined it reads its nonce unused at a block before it. Before,
      // that read was final there (invalid_payment_requirements): the payer who paid signed a new payment and paid twice.
      const { minedIn, pastWindow } = await minedJustBeforeItsWindow(payer, sent);
      const raised = { price: BigInt(sent.authorization.value) + 1n };
      const again = await sentAgainAt({ ...refused, path }, pastWindow, nodeAt(minedIn - 1n), raised);
      expect(again).toMatchObject(pendingFor(/not mined by block/));
      // The node caught up: its transfer found, not credited yet, pending as well.
      const caughtUp = await sentAgainAt({ ...refused, path }, pastWindow, chain.publicClient, raised);
      expect(caughtUp).toMatchObject(pendingFor(/spent, not yet credited/));
      expect(served()).toBe(1);
    });
  });

  it("and not mined, sent again past its validBefore, is answered pending while the chain's last confirmed block is before it, though the latest is past it", async () => {
    // The chain's clock moved past the window below, and its blocks, taken back after.
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-window-shut-unconfirmed";
      const refused = await refuse("its window shut by blocks not confirmed yet", path);
      const validBefore = BigInt(refused.sent.authorization.validBefore);
      const pastWindow = () => Number(validBefore) * 1000;
      // A rail of three confirmations: one block before its validBefore, then two past it (not confirmed yet). Those
      // two may be mined again, a copy of it in them before its validBefore. Before, the latest block's time made the
      // refusal final.
      const confirmed = { confirmations: 3 };
      for (const at of [validBefore - 1n, validBefore, validBefore + 1n]) {
        await gw.chain.networkHelpers.time.setNextBlockTimestamp(at);
        await gw.chain.networkHelpers.mine(1);
      }
      const early = await sentAgainAt({ ...refused, path }, pastWindow, chain.publicClient, confirmed);
      expect(early).toMatchObject(pendingFor(/not mined by block/));
      // One block more: the last confirmed one's time is its validBefore, so is every block any branch mines after it.
      await gw.chain.networkHelpers.time.setNextBlockTimestamp(validBefore + 2n);
      await gw.chain.networkHelpers.mine(1);
      const late = await sentAgainAt({ ...refused, path }, pastWindow, chain.publicClient, confirmed);
      expect(late).toMatchObject(refusedExpired);
      expect(refused.served()).toBe(1);
    });
  });

  it("and not mined, sent again at a price raised since, keeps its own refusal while its window is open by both clocks, and once shut is pending only on the payer's own signature", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-unmined-price-raised";
      const refused = await refuse("not mined, its price raised since", path);
      const a = refused.sent.authorization;
      const validBefore = BigInt(a.validBefore);
      // The paywall's price raised since: answered as a request owed on other terms (owedOnOtherTerms), which asks
      // verify nothing, neither of its window nor of its signature.
      const raised = { price: BigInt(a.value) + 1n };
      expect((await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp).toBeLessThan(
        validBefore,
      );
      // Its window open by the gateway's clock and the chain's: the refusal of its terms stands, final, rather than
      // hold the payer until its window shuts.
      const open = await sentAgainAt({ ...refused, path }, () => Date.now(), chain.publicClient, raised);
      expect(open).toMatchObject({ kind: "refused", refusal: { code: "invalid_payment_requirements" } });
      // Shut by the gateway's clock, not by the chain's: whoever holds it may still mine it, pending.
      const pastWindow = () => Number(validBefore) * 1000;
      const own = await sentAgainAt({ ...refused, path }, pastWindow, chain.publicClient, raised);
      expect(own).toMatchObject(pendingFor(/not mined by block/));
      // Another's signature over the same public terms is not the payer's: its own refusal, final. Before, it was
      // answered pending too, and a paywall said that over the other price window's refusal of its signature.
      const header = await signedByStranger(
        "signing a refused payment's terms, its price raised since",
        refused.header,
      );
      const madeUp = await sentAgainAt({ ...refused, path, header }, pastWindow, chain.publicClient, raised);
      expect(madeUp).toMatchObject({ kind: "refused", refusal: { code: "invalid_payment_requirements" } });
      expect(refused.served()).toBe(1);
    });
  });

  it("and not mined, sent again at a price raised since while the node cannot be read, is pending only on the payer's own signature", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-unmined-node-unread";
      const refused = await refuse("not mined, sent again while the node cannot be read", path);
      const a = refused.sent.authorization;
      // The paywall's price raised since: answered as a request owed on other terms (owedOnOtherTerms), which asks
      // verify nothing of its signature. The node cannot say whether it was mined: its latest block is not read.
      const raised = { price: BigInt(a.value) + 1n };
      type GetBlock = (query?: { blockTag?: string; blockNumber?: bigint }) => Promise<unknown>;
      const client = chain.publicClient as unknown as Record<string, GetBlock>;
      const unread = new Proxy(client, {
        get(target, property, receiver) {
          if (property !== "getBlock") return Reflect.get(target, property, receiver);
          return async (query?: { blockTag?: string }) => {
            if (query?.blockTag === "latest")
              throw new HttpRequestError({ url: "http://node.invalid", details: "fetch failed" });
            return target.getBlock!(query);
          };
        },
      }) as unknown as X402Chain["publicClient"];
      const own = await sentAgainAt({ ...refused, path }, () => Date.now(), unread, raised);
      expect(own).toMatchObject(pendingFor(/cannot be read now/));
      // Another's signature over the same public terms is not the payer's: its own refusal, final. Before, a node read
      // that failed answered it pending ("send the same payment again") without checking the signature.
      const header = await signedByStranger(
        "signing a refused payment's terms while the node cannot be read",
        refused.header,
      );
      const madeUp = await sentAgainAt({ ...refused, path, header }, () => Date.now(), unread, raised);
      expect(madeUp).toMatchObject({ kind: "refused", refusal: { code: "invalid_payment_requirements" } });
      expect(refused.served()).toBe(1);
    });
  });

  it("and mined as the same payment sent again at the same price settles, after its verify read the nonce unused, is answered pending, then served once credited", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-then-mined-as-sent-again";
      type ReadContract = (call: { functionName: string; args?: readonly unknown[] }) => Promise<unknown>;
      const client = gw.chain.publicClient as unknown as { readContract: ReadContract };
      const { readContract } = client;
      try {
        const refused = await refuse("then mined as sent again", path);
        const { base, header, sent, payer, served } = refused;
        // The payer funded again: sent again, its verify's simulation takes it, and its claim (given back) is taken.
        await gw.send(gw.chain.accounts[0]!, {
          address: chain.token,
          abi: testUsdAbi,
          functionName: "mint",
          args: [payer.address, 10_000n],
        });
        // Someone mines the authorization after that verify and before the rail's check of its nonce (or a node behind
        // the rail's read it unused for the verify): the rail refuses it as used, and the copy pays the first invoice,
        // still bound to the nonce. Before, the payer heard that refusal, final to an x402 client, and paid twice.
        let copyTx = null as Hex | null;
        let armed = true;
        client.readContract = async (call) => {
          const ofPayer =
            call.functionName === "authorizationState" &&
            String(call.args?.[0]).toLowerCase() === payer.address.toLowerCase();
          if (ofPayer && armed) {
            armed = false;
            copyTx = await minedByAnother(payer, sent);
          }
          return readContract(call);
        };
        const again = await fetch(`${base}${path}`, { headers: header });
        client.readContract = readContract;
        expect(copyTx).not.toBeNull();
        expect(again.status).toBe(402);
        expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
        expect(served()).toBe(2);
        // Sent again, before it is credited, to a node behind the copy's block (a load balancer's): its verify reads the
        // nonce unused, and its claim is taken, failed as the gateway read the nonce spent. Before, that node's read of
        // the nonce unused stood, and the payer heard a final "already taken", signed anew and paid twice.
        const minedIn = (await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx! })).blockNumber;
        const behind = await sentAgainAt({ ...refused, path }, () => Date.now(), nodeAt(minedIn - 1n));
        expect(behind).toMatchObject({ kind: "refused", refusal: { code: "unexpected_settle_error" } });
        // Credited: the same payment sent again reads its nonce used and is served, by the copy, once.
        await gw.rail.depositWatcher()!.catchUp(20);
        const paid = await fetch(`${base}${path}`, { headers: header });
        expect(paid.status).toBe(200);
        expect(await paid.json()).toEqual({ report: "the goods" });
        const receipt = JSON.parse(
          Buffer.from(paid.headers.get("payment-response")!, "base64").toString(),
        ) as {
          success: boolean;
          transaction: string;
        };
        expect(receipt).toMatchObject({ success: true, transaction: copyTx });
        const third = await fetch(`${base}${path}`, { headers: header });
        expect(third.status).toBe(402);
        expect(served()).toBe(3);
      } finally {
        client.readContract = readContract;
      }
    });
  });

  it("and mined as the same payment sent again at the same price settles, its owed invoice not readable then, is answered pending with its receipt", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-then-mined-as-sent-again-unread";
      type ReadContract = (call: { functionName: string; args?: readonly unknown[] }) => Promise<unknown>;
      const client = gw.chain.publicClient as unknown as { readContract: ReadContract };
      const { readContract } = client;
      const db = gw.app.db;
      const query = db.query;
      try {
        const refused = await refuse("then mined as sent again, its owed invoice unread", path);
        const { base, header, sent, payer, served } = refused;
        await gw.send(gw.chain.accounts[0]!, {
          address: chain.token,
          abi: testUsdAbi,
          functionName: "mint",
          args: [payer.address, 10_000n],
        });
        // Mined inside the rail's check of its nonce, as above; the read of its invoice still bound fails once, after
        // the resource was served. Before, that failure was thrown: a 500 without the receipt header.
        let armed = true;
        client.readContract = async (call) => {
          const ofPayer =
            call.functionName === "authorizationState" &&
            String(call.args?.[0]).toLowerCase() === payer.address.toLowerCase();
          if (ofPayer && armed) {
            armed = false;
            await minedByAnother(payer, sent);
          }
          return readContract(call);
        };
        let failed = 0;
        db.query = ((text: string, params?: unknown[]) => {
          if (failed > 0 || !text.includes("FROM x402_unsent_owed o")) return query.call(db, text, params);
          failed += 1;
          return Promise.reject(new Error("the database is unavailable (test)"));
        }) as typeof query;
        const again = await fetch(`${base}${path}`, { headers: header });
        client.readContract = readContract;
        db.query = query;
        expect(failed).toBe(1);
        expect(again.status).toBe(402);
        expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
        const receipt = JSON.parse(
          Buffer.from(again.headers.get("payment-response")!, "base64").toString(),
        ) as {
          success: boolean;
          errorReason: string;
        };
        expect(receipt).toMatchObject({ success: false, errorReason: "unexpected_settle_error" });
        expect(served()).toBe(2);
      } finally {
        client.readContract = readContract;
        db.query = query;
      }
    });
  });

  it("and not mined, sent again past its validBefore on a chain that mines on demand, is refused as expired though no block came since", async () => {
    await onChainTakenBack(async (refuse) => {
      const path = "/refused-window-shut-idle-chain";
      const refused = await refuse("its window shut on an idle chain", path);
      const validBefore = BigInt(refused.sent.authorization.validBefore);
      // No transaction since: the latest block's time is before its validBefore, and on a chain that mines on demand
      // (the embedded one without interval mining) stays so until one comes, which may be never; the next block, the
      // first that could take it, is stamped with the clock, at its validBefore or later. Before, every resend past
      // it was answered pending until some other transaction mined a block.
      expect((await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp).toBeLessThan(
        validBefore,
      );
      const onDemand = { minesOnDemand: true };
      const late = await sentAgainAt(
        { ...refused, path },
        () => Number(validBefore) * 1000,
        chain.publicClient,
        onDemand,
      );
      expect(late).toMatchObject(refusedExpired);
      // A second short of it by the gateway's clock: the next block may still take it, pending.
      const justBefore = await sentAgainAt(
        { ...refused, path },
        () => (Number(validBefore) - 1) * 1000,
        chain.publicClient,
        onDemand,
      );
      expect(justBefore).toMatchObject({ kind: "refused", refusal: { code: "unexpected_settle_error" } });
      expect(refused.served()).toBe(1);
    });
  });

  it("and mined, is answered pending when sent again though the node's logs trail its head", async () => {
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then mined, its logs not indexed yet",
      "/refused-then-mined-logs-behind",
    );
    type GetLogs = (query: { args?: { authorizer?: Address } }) => Promise<unknown>;
    const client = gw.chain.publicClient as unknown as { getLogs: GetLogs };
    const { getLogs } = client;
    let snapshot: Awaited<ReturnType<typeof gw.chain.networkHelpers.takeSnapshot>> | undefined;
    try {
      await minedByAnother(payer, sent);
      // 12 blocks since, 3 s of a chain of 0.25 s blocks: a provider's log index may trail its head by as much. Mined
      // one by one: Hardhat's mine of many reserves blocks, and a contract read at one of those finds no code there.
      // Taken back after: the tests that follow read the chain's blocks from its start.
      snapshot = await gw.chain.networkHelpers.takeSnapshot();
      for (let i = 0; i < 12; i++) await gw.chain.networkHelpers.mine(1);
      // A provider whose log index trails its head: the block that mined the copy is read (its nonce used at the
      // latest), its logs not yet. Before, no log found was final at once, and the payer who paid heard a nonce
      // already used.
      let asked = 0;
      client.getLogs = async (query) => {
        if (query.args?.authorizer?.toLowerCase() !== payer.address.toLowerCase()) return getLogs(query);
        asked += 1;
        return [];
      };
      const again = await fetch(`${base}/refused-then-mined-logs-behind`, { headers: header });
      client.getLogs = getLogs;
      expect(asked).toBeGreaterThan(0);
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
      expect(served()).toBe(1);
    } finally {
      client.getLogs = getLogs;
      await shop.close();
      await snapshot?.restore();
    }
  });

  it("and whose nonce the payer then cancelled is refused as used when sent again, once the cancel's log is read", async () => {
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then its nonce cancelled",
      "/refused-then-cancelled",
    );
    type GetLogs = (query: { args?: { authorizer?: Address } }) => Promise<unknown>;
    const client = gw.chain.publicClient as unknown as { getLogs: GetLogs };
    const { getLogs } = client;
    try {
      const a = sent.authorization;
      const signature = await payer.signTypedData({
        domain: { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
        types: {
          CancelAuthorization: [
            { name: "authorizer", type: "address" },
            { name: "nonce", type: "bytes32" },
          ],
        },
        primaryType: "CancelAuthorization",
        message: { authorizer: payer.address, nonce: a.nonce },
      });
      const { v, r, s } = parseSignature(signature);
      await gw.send(gw.chain.accounts[0]!, {
        address: chain.token,
        abi: testUsdAbi,
        functionName: "cancelAuthorization",
        args: [payer.address, a.nonce, Number(v), r, s],
      });
      // Its log not indexed yet: nothing says how the nonce was used, pending.
      client.getLogs = async (query) =>
        query.args?.authorizer?.toLowerCase() === payer.address.toLowerCase() ? [] : getLogs(query);
      const early = await fetch(`${base}/refused-then-cancelled`, { headers: header });
      expect(early.status).toBe(402);
      expect(((await early.json()) as { error: string }).error).toBe("unexpected_settle_error");
      client.getLogs = getLogs;
      // Read: final, at once, however few blocks past the cancel.
      const again = await fetch(`${base}/refused-then-cancelled`, { headers: header });
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("invalid_exact_evm_nonce_already_used");
      expect(served()).toBe(1);
    } finally {
      client.getLogs = getLogs;
      await shop.close();
    }
  });

  it("and mined, its logs not indexed, is answered pending until its window shut logsSettledS before, then refused", async () => {
    // The chain's clock moved past the window below taken back after.
    await onChainTakenBack(async (refuse) => {
      type GetLogs = (query: { args?: { authorizer?: Address } }) => Promise<unknown>;
      const client = gw.chain.publicClient as unknown as { getLogs: GetLogs };
      const { getLogs } = client;
      try {
        const refused = await refuse("then mined, its window shut", "/refused-then-mined-window-shut");
        const { base, header, sent, payer, served } = refused;
        await minedByAnother(payer, sent);
        client.getLogs = async (query) =>
          query.args?.authorizer?.toLowerCase() === payer.address.toLowerCase() ? [] : getLogs(query);
        const answer = async () => {
          const response = await fetch(`${base}/refused-then-mined-window-shut`, { headers: header });
          expect(response.status).toBe(402);
          return ((await response.json()) as { error: string }).error;
        };
        // Shut 12 blocks ago, seconds by the chain's clock: a log index may not have its last blocks yet.
        await gw.chain.networkHelpers.time.increaseTo(BigInt(sent.authorization.validBefore));
        await gw.chain.networkHelpers.mine(12);
        expect(await answer()).toBe("unexpected_settle_error");
        // Shut logsSettledS ago by the chain's clock: the logs are taken to have its every block, and none paid it.
        await gw.chain.networkHelpers.time.increase(Number(logsSettledS));
        expect(await answer()).toBe("invalid_exact_evm_nonce_already_used");
        expect(served()).toBe(1);
      } finally {
        client.getLogs = getLogs;
      }
    });
  });

  it("keeps the block its verify simulated at though the payer's balance was not read", async () => {
    // The batch not run (a node without state overrides) and the balance read beside the lone simulation failing:
    // the block asked for it is kept all the same, and the search for its transfer starts from it.
    type Call = (call: { stateOverride?: unknown }) => Promise<unknown>;
    type ReadContract = (call: { functionName: string; blockNumber?: bigint }) => Promise<unknown>;
    const client = gw.chain.publicClient as unknown as { call: Call; readContract: ReadContract };
    const { call, readContract } = client;
    let balanceRefused = 0;
    client.call = async (query) => {
      if (query.stateOverride !== undefined) throw new BaseError("state overrides are not supported");
      return call(query);
    };
    // simulate-batch.ts balanceOf's read (at the block it asked), not whyNotTaken's or the rail's.
    client.readContract = async (query) => {
      if (query.functionName !== "balanceOf" || query.blockNumber === undefined || balanceRefused > 0)
        return readContract(query);
      balanceRefused += 1;
      throw new BaseError("balanceOf reverted");
    };
    let before: bigint;
    try {
      before = await gw.chain.publicClient.getBlockNumber({ cacheTime: 0 });
      const { shop, sent } = await refusedAtPaywall(
        "its balance not read as verified",
        "/refused-balance-unread",
      );
      await shop.close();
      client.call = call;
      client.readContract = readContract;
      expect(balanceRefused).toBe(1);
      const a = sent.authorization;
      const [row] = await gw.app.db.query<{ verified_block: string | null }>(
        "SELECT verified_block::text AS verified_block FROM x402_unsent_owed WHERE payer = $1 AND nonce = $2",
        [a.from.toLowerCase(), a.nonce.toLowerCase()],
      );
      expect(row?.verified_block ?? null).not.toBeNull();
      expect(BigInt(row!.verified_block!)).toBeGreaterThanOrEqual(before);
    } finally {
      client.call = call;
      client.readContract = readContract;
    }
  });

  it("and mined, its row keeping no verified block, is searched for from its window's first block and answered pending", async () => {
    // Signed valid after a block's own time, at or before the gateway's clock (Hardhat's mine of many runs ahead of
    // it): the token takes it from the next block on, the first the search reads.
    const nowS = BigInt(Math.floor(Date.now() / 1000)) - 1n;
    let low = 0n;
    let high = await gw.chain.publicClient.getBlockNumber({ cacheTime: 0 });
    while (low < high) {
      const mid = (low + high + 1n) / 2n;
      if ((await gw.chain.publicClient.getBlock({ blockNumber: mid })).timestamp <= nowS) low = mid;
      else high = mid - 1n;
    }
    const opened = await gw.chain.publicClient.getBlock({ blockNumber: low });
    expect(opened.timestamp).toBeLessThanOrEqual(nowS);
    // The chain's time past its validAfter, as verify asks.
    await gw.chain.networkHelpers.mine(1);
    const { shop, base, header, sent, payer, served } = await refusedAtPaywall(
      "then mined, its row keeping no block",
      "/refused-then-mined-unverified",
      [],
      undefined,
      opened.timestamp,
    );
    try {
      const a = sent.authorization;
      // A row written before migration 0072, or by a verify whose block could not be read.
      const unset = await gw.app.db.query<{ nonce: string }>(
        "UPDATE x402_unsent_owed SET verified_block = NULL WHERE payer = $1 AND nonce = $2 RETURNING nonce",
        [a.from.toLowerCase(), a.nonce.toLowerCase()],
      );
      expect(unset).toHaveLength(1);
      const copyTx = await minedByAnother(payer, sent);
      const minedIn = (await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx })).blockNumber;
      const { result: again, from } = await logsReadFrom(payer.address, () =>
        fetch(`${base}/refused-then-mined-unverified`, { headers: header }),
      );
      expect(again.status).toBe(402);
      expect(((await again.json()) as { error: string }).error).toBe("unexpected_settle_error");
      // From the first block whose time is past its validAfter, or past its validBefore less what the paywall takes
      // (validForMaxS and validBeforeSkewS twice, scheme.ts unsentMinedWithinS) when later: its validAfter here.
      let after = BigInt(a.validBefore) - (validForMaxS + 2n * validBeforeSkewS);
      if (BigInt(a.validAfter) > after) after = BigInt(a.validAfter);
      expect(after).toBe(opened.timestamp);
      expect(from).toHaveLength(1);
      const first = await gw.chain.publicClient.getBlock({ blockNumber: from[0]! });
      const previous = await gw.chain.publicClient.getBlock({ blockNumber: from[0]! - 1n });
      expect(first.timestamp).toBeGreaterThan(after);
      expect(previous.timestamp).toBeLessThanOrEqual(after);
      expect(from[0]!).toBeLessThanOrEqual(minedIn);
      expect(served()).toBe(1);
    } finally {
      await shop.close();
    }
  });
});

describe("a row left submitted whose transaction was mined", () => {
  it("is settled and its gas booked, once however many passes see it", async () => {
    // The settler's gas booking fails every time: the payment settles, its gas is left (logged).
    const settler = createSingleSettler({ settlement: settlementWithoutGas() });
    const p = await claimed(await payment(await newPayer("single"), 700n));
    const result = await settler.settle(p.claimed, p.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    const txHash = result.transaction;
    expect(await gw.app.ledger.lookupTransfers([singleGasId(txHash)])).toHaveLength(0);
    await forceSubmitted(p);

    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(txHash);
    expect(gas).toBeGreaterThan(0n);
    expect(await reconcile()).toEqual({ settled: 1, failed: 0, left: 0 });
    expect(await rowOf(p)).toMatchObject({
      status: "settled",
      tx_hash: txHash,
      failure: null,
      invoice_id: result.invoiceId,
    });
    // With the block its value left the payer in, for the paywall's weighing of balances read before it.
    const [spent] = await gw.app.db.query<{ spent_block: string | null }>(
      "SELECT spent_block::text AS spent_block FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
      [p.claimed.authorization.from.toLowerCase(), p.claimed.authorization.nonce.toLowerCase()],
    );
    const mined = await gw.chain.publicClient.getTransactionReceipt({ hash: txHash as Hex });
    expect(spent?.spent_block).toBe(mined.blockNumber.toString());
    const [booked] = await gw.app.ledger.lookupTransfers([singleGasId(txHash)]);
    expect(booked?.amount).toBe(gas);
    expect(await feesBooked()).toBe(feesBefore + gas);

    // Seen again (its outcome forgotten once more): settled again, the gas not booked a second time.
    await forceSubmitted(p);
    expect(await reconcile()).toEqual({ settled: 1, failed: 0, left: 0 });
    expect((await rowOf(p))?.status).toBe("settled");
    expect(await feesBooked()).toBe(feesBefore + gas);
    // Nothing left: a third pass finds nothing.
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
  });

  it("of a batch: each item settled or failed by the receipt, the batch's gas split once as batch.ts splits it", async () => {
    // The batch is mined, but its settler hears `in_flight` (the receipt not seen in time): every row is left
    // `submitted` and the gas unbooked.
    let sentItems: readonly BatchItem[] = [];
    const inFlight: AuthorizationBatchSender = async (batch) => {
      sentItems = batch.items;
      const outcome = await gw.rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress });
      if (outcome.status !== "mined") throw new Error(`the batch was not mined: ${outcome.status}`);
      return { status: "in_flight", txHash: outcome.txHash };
    };
    const settler = createBatchSettler({
      settlement: gw.app.settlement,
      senderOf: () => inFlight,
      single: createSingleSettler({ settlement: gw.app.settlement }),
      settings: { batchSizeMax: 4, batchWaitMsMax: 60_000 },
    });
    const [a, b, c] = [await newPayer("batch a"), await newPayer("batch b"), await newPayer("batch c")];
    const ps = [
      await payment(a!, 300n),
      await payment(b!, 400n, c!),
      await payment(c!, 500n),
      await payment(a!, 600n),
    ];
    for (const p of ps) await claimed(p);
    const results = await Promise.all(ps.map((p) => settler.settle(p.claimed, p.requirements)));
    await settler.close();
    for (const result of results) expect(notOk(result).refusal).toBe("unexpected_settle_error");
    const rows = await Promise.all(ps.map(rowOf));
    const txHash = rows[0]!.tx_hash!;
    for (const row of rows) expect(row).toMatchObject({ status: "submitted", tx_hash: txHash });
    expect(sentItems.map((item) => item.reference).sort()).toEqual(rows.map((row) => row!.invoice_id).sort());

    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(txHash as Hex);
    expect(await reconcile()).toEqual({ settled: 3, failed: 1, left: 0 });
    expect((await rowOf(ps[0]!))?.status).toBe("settled");
    // Refused for its signature: recorded as the settler records it (before: `not_spent`).
    expect(await rowOf(ps[1]!)).toMatchObject({
      status: "failed",
      failure: "signature_invalid",
      tx_hash: txHash,
    });
    expect((await rowOf(ps[2]!))?.status).toBe("settled");
    expect((await rowOf(ps[3]!))?.status).toBe("settled");
    // One share per item, by invoice id (the remainder to the smallest), each under batch.ts's id. (The gas varies
    // with the payers' signatures, fresh keys each run: about one run in four it divides evenly, and then the order
    // shows nothing, but the shares and their sum are still checked. Before, such a run failed here.)
    const shares = splitEvenlyRemainderToFirst(gas, sentItems.length);
    const ids = sentItems
      .map((item) => item.reference)
      .sort()
      .map((invoiceId) => batchGasId(txHash, invoiceId));
    const booked = new Map((await gw.app.ledger.lookupTransfers(ids)).map((t) => [t.id, t.amount]));
    expect(ids.map((id) => booked.get(id))).toEqual(shares);
    expect(await feesBooked()).toBe(feesBefore + gas);

    for (const p of ps) await forceSubmitted(p);
    expect(await reconcile()).toEqual({ settled: 3, failed: 1, left: 0 });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });
});

describe("rows whose transaction is not mined yet, or reverted", () => {
  it("leaves them until mined; then both are settled, the reverted one by the stranger's copy, each gas booked", async () => {
    // Two payments of one payer sent while nothing is mined; the second one's authorization is also submitted by a
    // stranger with a higher tip, mined first, so the gateway's transaction reverts (the nonce used).
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const quick = { ...chain, receiptTimeoutMs: 300 };
    const payer = await newPayer("unmined");
    const paid = await claimed(await payment(payer, 600n));
    const frontRun = await claimed(await payment(payer, 200n));
    let copyTx: Hex;
    await setAutomine(false);
    try {
      for (const p of [paid, frontRun]) {
        const result = notOk(await settler.settle(p.claimed, { ...p.requirements, chain: quick }));
        expect(result.refusal).toBe("unexpected_settle_error");
        expect((await rowOf(p))?.status).toBe("submitted");
      }
      copyTx = await submitCopy(frontRun);

      expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 2 });
      for (const p of [paid, frontRun]) expect((await rowOf(p))?.status).toBe("submitted");
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await setAutomine(true);
    }
    const paidTx = (await rowOf(paid))!.tx_hash! as Hex;
    const revertedTx = (await rowOf(frontRun))!.tx_hash! as Hex;
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: revertedTx })).status).toBe("reverted");
    const feesBefore = await feesBooked();
    const gas = (await gasGweiOf(paidTx)) + (await gasGweiOf(revertedTx));

    // The front-run one is settled too: the stranger's copy moved its value to the hot wallet (before: failed,
    // "reverted", while the invoice was credited from the copy).
    expect(await reconcile()).toEqual({ settled: 2, failed: 0, left: 0 });
    expect(await rowOf(paid)).toMatchObject({ status: "settled", tx_hash: paidTx });
    const copied = await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx! });
    expect(await rowOf(frontRun)).toMatchObject({
      status: "settled",
      tx_hash: revertedTx,
      spent_block: String(copied.blockNumber),
      spent_tx_hash: copyTx!,
    });
    expect(await gw.app.ledger.lookupTransfers([singleGasId(paidTx), singleGasId(revertedTx)])).toHaveLength(
      2,
    );
    expect(await feesBooked()).toBe(feesBefore + gas);
    expect(await gw.tokenBalance(payer.address)).toBe(payerFunds - 800n);
  });
});

describe("a payment front-run by a copy of its own authorization", () => {
  /**
   * `p` settled by the single settler reading the chain through `on`, while a stranger's copy of its authorization,
   * sent once ours is, is mined first in the same block: ours reverts. The answer, the copy's and our transaction.
   */
  async function frontRun(p: Payment, on: X402Chain = chain, logger: Logger = silentLogger) {
    const settler = createSingleSettler({ settlement: gw.app.settlement, logger });
    await setAutomine(false);
    let copyTx: Hex;
    let settling: Promise<SettleResult>;
    try {
      settling = settler.settle(p.claimed, { ...p.requirements, chain: on });
      await expect.poll(async () => (await rowOf(p))?.status, { timeout: 10_000 }).toBe("submitted");
      copyTx = await submitCopy(p);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await setAutomine(true);
    }
    const result = await settling;
    const ownTx = (await rowOf(p))!.tx_hash! as Hex;
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: ownTx })).status).toBe("reverted");
    return { result, copyTx, ownTx };
  }

  it("is answered settled, by the copy that paid the hot wallet, its own reverted transaction's gas booked", async () => {
    const payer = await newPayer("copied");
    const copied = await claimed(await payment(payer, 300n));
    const { result, copyTx, ownTx } = await frontRun(copied);
    // Before: refused invalid_transaction_state, the row failed "reverted", while the payer had paid and the invoice
    // was credited from the copy.
    expect(result).toMatchObject({ ok: true, transaction: copyTx, amount: 300n });
    const mined = await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx });
    expect(await rowOf(copied)).toMatchObject({
      status: "settled",
      tx_hash: ownTx,
      spent_block: String(mined.blockNumber),
      spent_tx_hash: copyTx,
    });
    // A retried settle (the facilitator's) answers the copy, the transaction that moved the money, not ours.
    expect(await sentAuthorization(gw.app.db, chain, copied.claimed.authorization)).toMatchObject({
      status: "settled",
      txHash: ownTx,
      spentTxHash: copyTx,
    });
    expect(await gw.app.ledger.lookupTransfers([singleGasId(ownTx)])).toHaveLength(1);
    expect(await gw.tokenBalance(payer.address)).toBe(payerFunds - 300n);
  });

  it("is found through a node that caps the blocks one read of logs spans, the range read in halves", async () => {
    const spans: bigint[] = [];
    // A provider's cap: any eth_getLogs over more than two blocks refused with its JSON-RPC error.
    const capped = chainGettingLogs(gw, chain, (filter) => {
      const span = BigInt(filter.toBlock) - BigInt(filter.fromBlock) + 1n;
      spans.push(span);
      if (span > 2n) throw { code: -32005, message: "query exceeds max block range 2" };
    });
    const copied = await claimed(await payment(await newPayer("copied, capped node"), 310n));
    const { result, copyTx } = await frontRun(copied, capped);
    // Before: the search's one read of 1,000 blocks was refused, taken for no copy, and the payment failed.
    expect(result).toMatchObject({ ok: true, transaction: copyTx, amount: 310n });
    expect(spans.some((span) => span > 2n)).toBe(true);
    expect(await rowOf(copied)).toMatchObject({ status: "settled", spent_tx_hash: copyTx });
  });

  it.each([
    ["out of reach", 320n, undefined],
    ["behind a gateway that gives up (504)", 330n, 504],
  ])(
    "is left submitted, answered pending, while the node cannot search (%s); reconciliation settles it once it can",
    async (how, value, status) => {
      let reads = 0;
      const outOfReach = chainGettingLogs(gw, chain, () => {
        reads += 1;
        throw new HttpRequestError({ url: "http://node.invalid", details: "fetch failed", status });
      });
      const copied = await claimed(await payment(await newPayer(`copied, node ${how}`), value));
      const feesBefore = await feesBooked();
      const { logger, lines } = recordingLogger();
      const { result, copyTx, ownTx } = await frontRun(copied, outOfReach, logger);
      // One read: a payer waits on this search, and halving what timed out would ask again for each half.
      expect(reads).toBe(1);
      // Why it cannot say, logged with the node's error.
      const said = lines.find((line) => line.message.includes("whether a copy of the authorization paid"));
      expect(String((said?.fields.error as Error | undefined)?.message)).toContain("node.invalid");
      // Before: refused invalid_transaction_state and failed "reverted": a payer who had paid, told it had not.
      expect(result).toMatchObject({ ok: false, refusal: "unexpected_settle_error", pending: true });
      expect(await rowOf(copied)).toMatchObject({ status: "submitted", tx_hash: ownTx, spent_tx_hash: null });
      // Our reverted transaction's gas is booked all the same, once.
      expect(await feesBooked()).toBe(feesBefore + (await gasGweiOf(ownTx)));
      // Reconciliation through the same node leaves it; through one that answers, settles it by the copy.
      expect(await reconcile({}, silentLogger, outOfReach)).toEqual({ settled: 0, failed: 0, left: 1 });
      expect((await rowOf(copied))?.status).toBe("submitted");
      expect(await reconcile()).toEqual({ settled: 1, failed: 0, left: 0 });
      expect(await rowOf(copied)).toMatchObject({ status: "settled", tx_hash: ownTx, spent_tx_hash: copyTx });
      expect(await feesBooked()).toBe(feesBefore + (await gasGweiOf(ownTx)));
    },
  );

  it("is not taken for settled when the payer's nonce paid someone else (its own other authorization)", async () => {
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const payer = await newPayer("elsewhere");
    const mine = await claimed(await payment(payer, 300n));
    // The payer's own authorization of the same nonce to another address, for another amount, mined first.
    const elsewhere = { ...mine.claimed.authorization, to: gw.chain.accounts[5]!.address, value: 200n };
    const other = {
      claimed: {
        authorization: elsewhere,
        signature: await payer.signTypedData(
          transferWithAuthorizationTypedData(
            { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token },
            elsewhere,
          ),
        ),
      },
    };
    await setAutomine(false);
    let settling: Promise<SettleResult>;
    try {
      settling = settler.settle(mine.claimed, mine.requirements);
      await expect.poll(async () => (await rowOf(mine))?.status, { timeout: 10_000 }).toBe("submitted");
      await submitCopy(other);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await setAutomine(true);
    }
    expect(await settling!).toMatchObject({ ok: false, refusal: "invalid_transaction_state" });
    expect(await rowOf(mine)).toMatchObject({ status: "failed", failure: "reverted" });
  });
});

/**
 * The row left `submitted` with a transaction the node does not know (`txHash`: dropped, replaced, or never sent),
 * read before the others (updated_at `minutesAgo` back), its validBefore recorded as claim records it.
 */
async function leftWith(p: Payment, txHash: Hex, minutesAgo: number) {
  await gw.app.db.query(
    `UPDATE x402_authorizations
     SET status = 'submitted', tx_hash = $3, valid_before = $4, updated_at = now() - make_interval(mins => $5)
     WHERE payer = $1 AND nonce = $2`,
    [
      p.claimed.authorization.from.toLowerCase(),
      p.claimed.authorization.nonce.toLowerCase(),
      txHash,
      p.claimed.authorization.validBefore.toString(),
      minutesAgo,
    ],
  );
}

/** A hash no transaction has. */
const neverSent = (name: string) => keccak256(stringToHex(`x402 reconcile: never sent ${name}`));

async function chainNowS(): Promise<bigint> {
  return (await gw.chain.publicClient.getBlock({ blockTag: "latest" })).timestamp;
}

/** A logger keeping the messages of its errors. */
function errorsLogged() {
  const messages: string[] = [];
  const logger: Logger = {
    ...silentLogger,
    error: (...args: [string] | [Record<string, unknown>, string]) => {
      messages.push(args.length === 1 ? args[0] : args[1]);
    },
    child: () => logger,
  };
  return { logger, messages };
}

describe("rows whose transaction the node does not know", () => {
  it("one never sent neither holds back a newer row nor stays once its window has passed", async () => {
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const dropped = await claimed(
      await payment(await newPayer("never sent"), 900n, undefined, {
        validBefore: (await chainNowS()) + 600n,
      }),
    );
    const newer = await claimed(await payment(await newPayer("behind the never sent"), 800n));
    const result = await settler.settle(newer.claimed, newer.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    await leftWith(dropped, neverSent("a"), 60);
    await leftWith(newer, result.transaction, 30); // mined, its outcome forgotten
    const feesBefore = await feesBooked();

    // One row a pass, the oldest first: the row whose transaction is nowhere is left, and moved behind the newer.
    expect(await reconcile({ rowsPerPassMax: 1 })).toEqual({ settled: 0, failed: 0, left: 1 });
    expect(await reconcile({ rowsPerPassMax: 1 })).toEqual({ settled: 1, failed: 0, left: 0 });
    expect((await rowOf(newer))?.status).toBe("settled");
    // Within its window the authorization may still be spent: left.
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 1 });
    expect((await rowOf(dropped))?.status).toBe("submitted");

    await gw.chain.networkHelpers.time.increase(600); // the chain's clock reaches its validBefore
    expect(await reconcile()).toEqual({ settled: 0, failed: 1, left: 0 });
    expect(await rowOf(dropped)).toMatchObject({
      status: "failed",
      failure: "dropped",
      tx_hash: neverSent("a"),
    });
    // Nothing was mined for it: no gas booked (the newer row's was, by its settler).
    expect(await feesBooked()).toBe(feesBefore);
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
  });

  it("one replaced by a transaction of ours that spent it is settled from that one, its gas booked once", async () => {
    // The send journal's fee bump: the row names the transaction first sent (superseded, as the journal records
    // it), the send's replacement was mined.
    const settler = createSingleSettler({ settlement: settlementWithoutGas() });
    const p = await claimed(await payment(await newPayer("replaced"), 750n));
    const result = await settler.settle(p.claimed, p.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    const mined = result.transaction;
    await gw.app.db.query(
      "INSERT INTO evm_sends_replaced (attempt_id, tx_hash, raw_tx) SELECT attempt_id, $2, '0x' FROM evm_sends WHERE tx_hash = $1",
      [mined.toLowerCase(), neverSent("replaced")],
    );
    expect(await gw.rail.sendHashesOf(neverSent("replaced"))).toEqual([
      mined.toLowerCase(),
      neverSent("replaced"),
    ]);
    await leftWith(p, neverSent("replaced"), 10);
    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(mined);

    expect(await reconcile()).toEqual({ settled: 1, failed: 0, left: 0 });
    expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: mined, failure: null });
    const [booked] = await gw.app.ledger.lookupTransfers([singleGasId(mined)]);
    expect(booked?.amount).toBe(gas);
    expect(await feesBooked()).toBe(feesBefore + gas);
    // Seen again under the first hash: settled again, the gas not booked a second time.
    await leftWith(p, neverSent("replaced"), 10);
    expect(await reconcile()).toEqual({ settled: 1, failed: 0, left: 0 });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });

  it("one whose authorization a stranger spent is left for a person, said once a pass, and moved behind", async () => {
    const p = await claimed(await payment(await newPayer("spent by a stranger"), 650n));
    const a = p.claimed.authorization;
    const spent = await submitCopy(p);
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: spent });
    await leftWith(p, neverSent("stranger"), 10);
    const { logger, messages } = errorsLogged();
    expect(await reconcile({}, logger)).toEqual({ settled: 0, failed: 0, left: 1 });
    expect(messages).toEqual([expect.stringContaining("left for a person")]);
    expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: neverSent("stranger") });
    const [row] = await gw.app.db.query<{ quiet: boolean }>(
      "SELECT updated_at > now() - interval '1 minute' AS quiet FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
      [a.from.toLowerCase(), a.nonce.toLowerCase()],
    );
    expect(row?.quiet).toBe(true);
    // Out of the way of the tests after.
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'failed' WHERE payer = $1 AND nonce = $2",
      [a.from.toLowerCase(), a.nonce.toLowerCase()],
    );
  });

  it("a transaction whose reads fail is skipped: the rows of the others are concluded in the same pass", async () => {
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const bad = await claimed(await payment(await newPayer("unreadable"), 550n));
    const good = await claimed(await payment(await newPayer("behind the unreadable"), 450n));
    const result = await settler.settle(good.claimed, good.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    await leftWith(bad, "0x1234", 60); // not a transaction hash: the node refuses the question
    await leftWith(good, result.transaction, 30);
    const { logger, messages } = errorsLogged();
    expect(await reconcile({}, logger)).toEqual({ settled: 1, failed: 0, left: 1 });
    expect(messages).toEqual([expect.stringContaining("concluding a transaction failed")]);
    expect((await rowOf(good))?.status).toBe("settled");
    expect((await rowOf(bad))?.status).toBe("submitted");
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'failed' WHERE payer = $1 AND nonce = $2",
      [bad.claimed.authorization.from.toLowerCase(), bad.claimed.authorization.nonce.toLowerCase()],
    );
  });
});

/**
 * Another rail on the gateway's database and hot wallet (what a second gateway process runs), waiting 300 ms for a
 * receipt and replacing its send as soon as it is asked again (the send journal's fee bump).
 */
function bumpingRail(): EvmRail {
  return anotherProcessRail(gw, { receiptTimeoutMs: 300, replaceAfterMs: 0 });
}

/**
 * With nothing mined: the payments sent as one batch, not mined in time (every row left `submitted` with the
 * batch's transaction), then the batch sent again under its key — replaced, fees bumped. Automine stays off.
 */
async function batchSentThenBumped(ps: readonly Payment[]) {
  const rail = bumpingRail();
  let sent: Parameters<AuthorizationBatchSender>[0] | undefined;
  const sender: AuthorizationBatchSender = async (batch) => {
    sent = batch;
    return rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress });
  };
  const settler = createBatchSettler({
    settlement: gw.app.settlement,
    senderOf: () => sender,
    single: createSingleSettler({ settlement: gw.app.settlement }),
    settings: { batchSizeMax: ps.length, batchWaitMsMax: 60_000 },
  });
  for (const p of ps) await claimed(p);
  await setAutomine(false);
  const results = await Promise.all(ps.map((p) => settler.settle(p.claimed, p.requirements)));
  await settler.close();
  for (const result of results) expect(notOk(result).refusal).toBe("unexpected_settle_error");
  const first = (await rowOf(ps[0]!))!.tx_hash! as Hex;
  for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: first });
  const again = await rail.settleAuthorizationBatch({ ...sent!, settler: settlerAddress });
  if (again.status !== "in_flight") throw new Error(`the bumped batch: ${again.status}`);
  expect(again.txHash).not.toBe(first);
  expect(await gw.rail.sendHashesOf(first)).toEqual([again.txHash, first]);
  return { first, bumped: again.txHash };
}

describe("rows whose transaction was replaced by the send journal's fee bump", () => {
  it("the replacement mined without spending any: each row failed from its receipt, its gas booked once", async () => {
    // Both authorizations expire before the replacement is mined: the token refuses each, their nonces stay unused.
    const endS = (await chainNowS()) + 600n;
    const ps = [
      await payment(await newPayer("bumped, none spent a"), 310n, undefined, { validBefore: endS }),
      await payment(await newPayer("bumped, none spent b"), 320n, undefined, { validBefore: endS }),
    ];
    let first: Hex;
    let bumped: Hex;
    try {
      ({ first, bumped } = await batchSentThenBumped(ps));
      await gw.chain.networkHelpers.time.setNextBlockTimestamp(endS + 1n);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await setAutomine(true);
    }
    const receipt = await gw.chain.publicClient.getTransactionReceipt({ hash: bumped });
    for (const p of ps)
      expect(
        await gw.chain.publicClient.readContract({
          address: chain.token,
          abi: testUsdAbi,
          functionName: "authorizationState",
          args: [p.claimed.authorization.from, p.claimed.authorization.nonce],
        }),
      ).toBe(false);
    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(bumped);
    expect(gas).toBeGreaterThan(0n);

    expect(await reconcile()).toEqual({ settled: 0, failed: 2, left: 0 });
    // Mined, the batch refused each as expired: recorded as its settler records that refusal (before: `not_spent`).
    const failure = receipt.status === "success" ? "authorization_expired" : "reverted";
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "failed", failure, tx_hash: bumped });
    expect(await feesBooked()).toBe(feesBefore + gas);
    // Seen again under the first hash: failed again, the gas not booked a second time.
    for (const p of ps) await leftWith(p, first, 10);
    expect(await reconcile()).toEqual({ settled: 0, failed: 2, left: 0 });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });

  it("the replacement mined, one item spent by a stranger first: concluded from the replacement, none left", async () => {
    const [a, b] = [await newPayer("bumped, spent a"), await newPayer("bumped, stranger b")];
    const ps = [await payment(a, 330n), await payment(b, 340n)];
    let bumped: Hex;
    let copyTx: Hex;
    try {
      ({ bumped } = await batchSentThenBumped(ps));
      // A stranger submits b's authorization with a higher tip: mined before the replacement, which refuses it.
      copyTx = await submitCopy(ps[1]!);
      await gw.chain.networkHelpers.mine(1);
    } finally {
      await setAutomine(true);
    }
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: bumped })).status).toBe("success");
    // The stranger's row read first.
    await leftWith(ps[1]!, (await rowOf(ps[1]!))!.tx_hash! as Hex, 20);
    await leftWith(ps[0]!, (await rowOf(ps[0]!))!.tx_hash! as Hex, 10);
    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(bumped);

    const { logger, messages } = errorsLogged();
    // Both settled: b's value came to the hot wallet by the stranger's copy (before: b failed, "not_spent").
    expect(await reconcile({}, logger)).toEqual({ settled: 2, failed: 0, left: 0 });
    expect(messages).toEqual([]);
    expect(await rowOf(ps[0]!)).toMatchObject({ status: "settled", tx_hash: bumped });
    const copied = await gw.chain.publicClient.getTransactionReceipt({ hash: copyTx! });
    expect(await rowOf(ps[1]!)).toMatchObject({
      status: "settled",
      tx_hash: bumped,
      spent_block: String(copied.blockNumber),
    });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });
});

describe("a transport fault of one transaction's read while the node answers", () => {
  it("ends only that transaction's turn: its rows left and moved behind, the others concluded", async () => {
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const slow = await claimed(await payment(await newPayer("slow to read"), 560n));
    const good = await claimed(await payment(await newPayer("behind the slow"), 460n));
    const result = await settler.settle(good.claimed, good.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    await leftWith(slow, neverSent("slow"), 60);
    await leftWith(good, result.transaction, 30);
    // The node times out on the receipt of the one transaction (as a heavy question of a loaded node does).
    const client = chain.publicClient;
    const faulty: X402Chain = {
      ...chain,
      publicClient: new Proxy(client, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver);
          if (property !== "getTransactionReceipt") return value;
          return (args: { hash: Hex }) => {
            if (args.hash === neverSent("slow"))
              throw new TimeoutError({ body: { method: "eth_getTransactionReceipt" }, url: "http://node" });
            return client.getTransactionReceipt(args);
          };
        },
      }),
    };
    const { logger, messages } = errorsLogged();
    expect(await reconcile({}, logger, faulty)).toEqual({ settled: 1, failed: 0, left: 1 });
    expect(messages).toEqual([expect.stringContaining("concluding a transaction failed")]);
    expect((await rowOf(good))?.status).toBe("settled");
    expect((await rowOf(slow))?.status).toBe("submitted");
    const [row] = await gw.app.db.query<{ quiet: boolean }>(
      "SELECT updated_at > now() - interval '1 minute' AS quiet FROM x402_authorizations WHERE payer = $1 AND nonce = $2",
      [slow.claimed.authorization.from.toLowerCase(), slow.claimed.authorization.nonce.toLowerCase()],
    );
    expect(row?.quiet).toBe(true);
    await gw.app.db.query(
      "UPDATE x402_authorizations SET status = 'failed' WHERE payer = $1 AND nonce = $2",
      [slow.claimed.authorization.from.toLowerCase(), slow.claimed.authorization.nonce.toLowerCase()],
    );
  });
});

describe("a settlement whose transaction is replaced while the settler waits for its receipt", () => {
  it("records, books and answers the transaction mined, not the one first sent", async () => {
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const p = await claimed(await payment(await newPayer("replaced while waiting"), 820n));
    const feesBefore = await feesBooked();
    await setAutomine(false);
    let first: Hex;
    let replacement: Hex;
    let result: SettleResult;
    try {
      const settling = settler.settle(p.claimed, p.requirements);
      // Sent and recorded: the settler now waits for its receipt.
      await expect.poll(async () => (await rowOf(p))?.tx_hash ?? null, { timeout: 10_000 }).not.toBeNull();
      first = (await rowOf(p))!.tx_hash as Hex;
      // The same transaction at a higher fee, as the send-gas pass's bump sends it.
      const sent = await gw.chain.publicClient.getTransaction({ hash: first });
      replacement = await gw.chain.walletClient.sendTransaction({
        account: gw.chain.walletClient.account,
        chain: gw.chain.walletClient.chain,
        to: sent.to!,
        data: sent.input,
        nonce: sent.nonce,
        gas: sent.gas,
        maxFeePerGas: sent.maxFeePerGas! * 2n,
        maxPriorityFeePerGas: sent.maxPriorityFeePerGas! * 2n,
      });
      expect(replacement).not.toBe(first);
      await gw.chain.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      result = await settling;
    } finally {
      await setAutomine(true);
    }
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    expect(result.transaction).toBe(replacement);
    expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: replacement });
    const gas = await gasGweiOf(replacement);
    const [booked] = await gw.app.ledger.lookupTransfers([singleGasId(replacement)]);
    expect(booked?.amount).toBe(gas);
    expect(await gw.app.ledger.lookupTransfers([singleGasId(first)])).toHaveLength(0);
    expect(await feesBooked()).toBe(feesBefore + gas);
  });
});

describe("a settlement whose first broadcast the node did not take", () => {
  it("is answered pending at once, its row submitted with the transaction, and settled once the journal sends it again", async () => {
    // The node refuses the first broadcast (Hardhat's words for a nonce past the pending one) and shows neither the
    // nonce used nor the transaction: not taken, broadcast again at the next pass.
    let refusals = 0;
    const refusing = createPublicClient({
      chain: gw.chain.chain,
      transport: custom({
        request: (args: { method: string; params?: unknown }) => {
          if (args.method === "eth_sendRawTransaction" && refusals === 0) {
            refusals += 1;
            throw Object.assign(new Error("Nonce too high. Expected nonce to be 0 but got 1."), {
              code: -32000,
            });
          }
          return gw.chain.provider.request(args as never);
        },
      }),
      pollingInterval: 50,
    });
    // The gateway's rail through that node (not started: its deposit watcher is this file's, and stopped).
    const rail = anotherProcessRail(gw, {
      publicClient: refusing,
      receiptTimeoutMs: 600_000,
      deposits: {
        factory: gw.chain.contracts.forwarderFactory,
        pollIntervalMs: 3_600_000,
        lateWatchMs: 3_600_000,
        sweepSaltsMax: 50,
      },
    });
    const { logger, lines } = recordingLogger();
    const settler = createSingleSettler({
      settlement: { ...gw.app.settlement, rails: new Map([["evm", rail]]) },
      logger,
    });
    const p = await claimed(await payment(await newPayer("not taken"), 850n));
    // A receipt awaited would hold the payer this long: none may be.
    const requirements = { ...p.requirements, chain: { ...chain, receiptTimeoutMs: 600_000 } };
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<"still waiting">((resolve) => {
      timer = setTimeout(() => resolve("still waiting"), 10_000);
    });
    // Before: the receipt awaited (up to the x402 timeout, 60 s by default) though none could come before the next
    // pass broadcast it again, to answer pending all the same.
    const answer = await Promise.race([settler.settle(p.claimed, requirements), waited]);
    clearTimeout(timer);
    expect(refusals).toBe(1);
    expect(answer).toMatchObject({ ok: false, refusal: "unexpected_settle_error", pending: true });
    const [send] = await gw.app.db.query<{ tx_hash: Hex }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
      [
        `transfer-auth:${chain.chainId}:${p.claimed.authorization.from.toLowerCase()}:${p.claimed.authorization.nonce}`,
      ],
    );
    expect(send).toBeDefined();
    expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: send!.tx_hash });
    await expect(gw.chain.publicClient.getTransaction({ hash: send!.tx_hash })).rejects.toThrow();
    expect(lines.filter((line) => line.level === "warn").map((line) => line.message)).toEqual([
      expect.stringMatching(/not taken by the node yet/),
    ]);
    // The send-gas pass broadcasts what the journal holds; mined, reconciliation settles the row.
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chainId);
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: send!.tx_hash, timeout: 10_000 });
    expect(await reconcile()).toMatchObject({ settled: 1 });
    expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: send!.tx_hash });
  });
});

describe("a row left claimed by a settler that threw once its transaction was stored", () => {
  it("is adopted from the send journal and settled once its transaction is mined, for a retried settle to find", async () => {
    // The settler's rail stores the signed transaction and broadcasts it, then the database refuses its record of it
    // with the invoice, once: it throws. (A broadcast the node refuses throws no more: the rail answers it submitted.)
    const db = gw.app.db;
    const query = db.query;
    db.query = ((text: string, params?: unknown[]) => {
      if (!text.includes("SET auth_tx_hash")) return query(text, params);
      db.query = query;
      return Promise.reject(new Error("the database refused the write (test)"));
    }) as typeof db.query;
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const p = await claimed(await payment(await newPayer("broadcast refused"), 830n));
    const first = notOk(await settler.settle(p.claimed, p.requirements));
    db.query = query;
    expect(first).toMatchObject({
      refusal: "unexpected_settle_error",
      pending: true,
    });
    const left = await rowOf(p);
    expect(left).toMatchObject({ status: "claimed", tx_hash: null });
    expect(left?.invoice_id).not.toBeNull();
    // The send-gas pass broadcasts what the journal holds, and it is mined.
    await sendGasPassOnce(gw.app.settlement, gw.rail, chain.chainId);
    const [sent] = await gw.app.db.query<{ tx_hash: Hex }>(
      "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
      [
        `transfer-auth:${chain.chainId}:${p.claimed.authorization.from.toLowerCase()}:${p.claimed.authorization.nonce}`,
      ],
    );
    expect(sent).toBeDefined();
    await gw.chain.publicClient.waitForTransactionReceipt({ hash: sent!.tx_hash });
    // An older claim bound to an invoice with nothing sent for it (a settler that stopped before sending): not
    // adoptable, and it must not take the pass's only place from the one that is.
    const stuck = await claimed(await payment(await newPayer("nothing sent"), 840n));
    await record(gw.app.db, chain, stuck.claimed.authorization, {
      status: "claimed",
      invoiceId: "inv_nothing_sent",
    });
    await gw.app.db.query(
      "UPDATE x402_authorizations SET updated_at = now() - interval '1 hour' WHERE payer = $1 AND nonce = $2",
      [stuck.claimed.authorization.from.toLowerCase(), stuck.claimed.authorization.nonce.toLowerCase()],
    );
    expect(await reconcile({ rowsPerPassMax: 1 })).toMatchObject({ settled: 1 });
    expect(await rowOf(stuck)).toMatchObject({ status: "claimed", tx_hash: null });
    expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: sent!.tx_hash });
    // What the facilitator's retried settle reads to answer it (before: nothing, and it was refused as taken).
    expect(await sentAuthorization(gw.app.db, chain, p.claimed.authorization)).toMatchObject({
      status: "settled",
      txHash: sent!.tx_hash,
    });
  });
});

/**
 * A batch settler whose every gas booking fails (afterSent's tries all spent), its batches sent through the rail to
 * X402BatchSettler; `revert`: the batch is mined reverted — once broadcast (automine off, nothing mined), the settler
 * contract's code is a bare revert for the one block that mines it, then its own again.
 */
async function settledWithoutGas(ps: readonly Payment[], revert: boolean) {
  let key: string | undefined;
  const settler = createBatchSettler({
    settlement: settlementWithoutGas(),
    senderOf: () => (batch) => {
      key = batch.key;
      return gw.rail.settleAuthorizationBatch({ ...batch, settler: settlerAddress });
    },
    single: createSingleSettler({ settlement: gw.app.settlement }),
    settings: { batchSizeMax: ps.length, batchWaitMsMax: 60_000 },
  });
  for (const p of ps) await claimed(p);
  if (!revert) {
    const results = await Promise.all(ps.map((p) => settler.settle(p.claimed, p.requirements)));
    await settler.close();
    return results;
  }
  const own = await gw.chain.publicClient.getCode({ address: settlerAddress });
  if (own === undefined) throw new Error("X402BatchSettler has no code");
  let settling: Promise<SettleResult[]>;
  await setAutomine(false);
  try {
    settling = Promise.all(ps.map((p) => settler.settle(p.claimed, p.requirements)));
    for (let broadcast = false; !broadcast; ) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (key === undefined) continue;
      const [sent] = await gw.app.db.query<{ tx_hash: Hex }>(
        "SELECT tx_hash FROM evm_sends WHERE attempt_id = $1",
        [`x402-batch:${key}`],
      );
      broadcast =
        sent !== undefined &&
        (await gw.chain.publicClient.getTransaction({ hash: sent.tx_hash }).then(
          () => true,
          () => false,
        ));
    }
    await gw.chain.networkHelpers.setCode(settlerAddress, "0x60006000fd"); // PUSH1 0, PUSH1 0, REVERT
    await gw.chain.networkHelpers.mine(1);
  } finally {
    await gw.chain.networkHelpers.setCode(settlerAddress, own);
    await setAutomine(true);
  }
  const results = await settling;
  await settler.close();
  return results;
}

/** The payment as a resource server sends it to the facilitator's /settle (the official client's v2 body). */
function facilitatorRequest(p: Payment) {
  const a = p.claimed.authorization;
  const accepted = {
    scheme: "exact",
    network: p.requirements.network,
    amount: p.requirements.amount.toString(),
    asset: chain.token,
    payTo: chain.hotWallet,
    maxTimeoutSeconds: 300,
    extra: { name: "USD Coin", version: "2" },
  };
  return {
    paymentPayload: {
      x402Version: 2,
      resource: { url: "http://127.0.0.1/report", description: "a report", mimeType: "application/json" },
      accepted,
      payload: {
        signature: p.claimed.signature,
        authorization: {
          from: a.from,
          to: a.to,
          value: a.value.toString(),
          validAfter: a.validAfter.toString(),
          validBefore: a.validBefore.toString(),
          nonce: a.nonce,
        },
      },
    },
    paymentRequirements: accepted,
  };
}

describe("a mined batch whose gas its settler could not book", () => {
  it("of one payment, retried at the facilitator before a pass: its gas booked before its row is settled", async () => {
    const p = await payment(await newPayer("retried, gas unbooked"), 170n);
    const [result] = await settledWithoutGas([p], false);
    expect(result).toMatchObject({ ok: true });
    const txHash = (await rowOf(p))!.tx_hash! as Hex;
    expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: txHash });
    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(txHash);
    const deps = createX402Deps({
      db: gw.app.db,
      settlement: gw.app.settlement,
      chains: [chain],
      logger: silentLogger,
    });
    // The resource server's retry answers the settlement, and books the batch's gas as a pass would before it settles
    // the row. Before, it settled the row alone: no pass read it again, and the batch's gas was never booked.
    expect(await facilitatorSettle(deps, facilitatorRequest(p), p.claimed.credit)).toMatchObject({
      success: true,
      transaction: txHash,
    });
    expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: txHash });
    expect(await feesBooked()).toBe(feesBefore + gas);
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });

  it("reverted as a whole: reconciliation books its gas once, split as batch.ts splits it, and leaves its rows open until spent", async () => {
    const ps = [
      await payment(await newPayer("reverted, gas unbooked a"), 110n),
      await payment(await newPayer("reverted, gas unbooked b"), 120n),
      await payment(await newPayer("reverted, gas unbooked c"), 130n),
    ];
    const results = await settledWithoutGas(ps, true);
    // The payer's answer is the chain's, whatever the ledger did: its authorization, unspent, may still be mined by
    // whoever holds it. Before: invalid_transaction_state, as if it could not.
    for (const result of results)
      expect(result).toMatchObject({ ok: false, refusal: "unexpected_settle_error", pending: true });
    const rows = await Promise.all(ps.map(rowOf));
    const txHash = rows[0]!.tx_hash! as Hex;
    expect((await gw.chain.publicClient.getTransactionReceipt({ hash: txHash })).status).toBe("reverted");
    for (const row of rows) expect(row?.tx_hash).toBe(txHash);
    // By invoice id, as batch.ts splits the gas (the remainder to the smallest).
    const ids = rows
      .map((row) => row!.invoice_id!)
      .sort()
      .map((invoiceId) => batchGasId(txHash, invoiceId));
    expect(await gw.app.ledger.lookupTransfers(ids)).toHaveLength(0);

    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(txHash);
    expect(gas).toBeGreaterThan(0n);
    // Before: each row `failed` at once, which reconciliation never reads, and the gas the hot wallet paid for the
    // revert was never booked (the rail had handed it to x402, so the send-gas pass books none of it either).
    const counts = await reconcile();
    expect(await feesBooked()).toBe(feesBefore + gas);
    // Each authorization unspent within its window: left, `submitted` (before: failed "reverted", while anyone
    // holding it could still submit it and have the invoice credited).
    expect(counts).toEqual({ settled: 0, failed: 0, left: 3 });
    for (const p of ps) expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: txHash });
    const shares = splitEvenlyRemainderToFirst(gas, ps.length);
    const booked = new Map((await gw.app.ledger.lookupTransfers(ids)).map((t) => [t.id, t.amount]));
    expect(ids.map((id) => booked.get(id))).toEqual(shares);
    // Once each is spent by a stranger's copy, the next pass settles it by that copy, and books nothing more.
    const copies: Hex[] = [];
    for (const p of ps) copies.push(await submitCopy(p));
    for (const copy of copies) await gw.chain.publicClient.waitForTransactionReceipt({ hash: copy });
    expect(await reconcile()).toEqual({ settled: 3, failed: 0, left: 0 });
    for (const [i, p] of ps.entries())
      expect(await rowOf(p)).toMatchObject({ status: "settled", tx_hash: txHash, spent_tx_hash: copies[i] });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });

  it("settled in part: each payer answered by the receipt, and reconciliation books the gas and concludes them", async () => {
    const [a, b, stranger] = [
      await newPayer("partly, gas unbooked a"),
      await newPayer("partly, gas unbooked b"),
      await newPayer("partly, gas unbooked stranger"),
    ];
    const ps = [await payment(a, 140n), await payment(b, 150n, stranger), await payment(a, 160n)];
    const results = await settledWithoutGas(ps, false);
    expect(results[0]).toMatchObject({ ok: true });
    expect(notOk(results[1]!).refusal).toBe("invalid_exact_evm_payload_signature");
    expect(results[2]).toMatchObject({ ok: true });
    const rows = await Promise.all(ps.map(rowOf));
    const txHash = rows[0]!.tx_hash! as Hex;
    for (const row of rows) expect(row?.tx_hash).toBe(txHash);

    const feesBefore = await feesBooked();
    const gas = await gasGweiOf(txHash);
    // Before: the rows settled, failed, settled at once, and the batch's gas never booked.
    const counts = await reconcile();
    expect(await feesBooked()).toBe(feesBefore + gas);
    expect(counts).toEqual({ settled: 2, failed: 1, left: 0 });
    expect((await rowOf(ps[0]!))?.status).toBe("settled");
    expect(await rowOf(ps[1]!)).toMatchObject({ status: "failed", failure: "signature_invalid" });
    expect((await rowOf(ps[2]!))?.status).toBe("settled");
    const ids = rows.map((row) => batchGasId(txHash, row!.invoice_id!));
    expect(await gw.app.ledger.lookupTransfers(ids)).toHaveLength(3);
    expect(await reconcile()).toEqual({ settled: 0, failed: 0, left: 0 });
    expect(await feesBooked()).toBe(feesBefore + gas);
  });

  it("refused items concluded by reconciliation: recorded, and a retried settle answered, as their settler did", async () => {
    const [a, b, poor] = [
      await newPayer("refused, gas unbooked a"),
      await newPayer("refused, gas unbooked b"),
      await newPayer("refused, gas unbooked poor", 10n),
    ];
    // b's signature is its high-s twin: b's still (verification recovers b from it, so a retry passes the signature's
    // check), but the token refuses it (ECDSAInvalidSignatureS). `poor` holds less than it pays.
    const badSignature = withHighS(await payment(b, 185n));
    const short = await payment(poor, 195n);
    const ps = [await payment(a, 175n), badSignature, short];
    const results = await settledWithoutGas(ps, false);
    expect(results[0]).toMatchObject({ ok: true });
    const answered = [notOk(results[1]!).refusal, notOk(results[2]!).refusal];
    // `poor`'s refusal undid its nonce's mark: unused, valid until its validBefore, answered pending (before:
    // insufficient_funds, though anyone holding it could still mine it once the payer's balance is back).
    expect(answered).toEqual(["invalid_exact_evm_payload_signature", "unexpected_settle_error"]);
    // The batch's gas not booked: every row left `submitted`, whatever its caller was answered.
    for (const p of ps) expect((await rowOf(p))?.status).toBe("submitted");

    expect(await reconcile()).toEqual({ settled: 1, failed: 1, left: 1 });
    // Recorded as the settler records a refused item it concludes itself (x402-batch.test.ts); nothing left the
    // payers' balances. Before: both `not_spent`, with the batch's block as if their value had been spent. `short`,
    // open, is left `submitted` until it is mined or its window shuts.
    expect(await rowOf(badSignature)).toMatchObject({
      status: "failed",
      failure: "signature_invalid",
      spent_block: null,
    });
    expect(await rowOf(short)).toMatchObject({ status: "submitted", failure: null, spent_block: null });
    // The resource server's retry of each settle is answered what the first was. Before: "nonce already used".
    const deps = createX402Deps({
      db: gw.app.db,
      settlement: gw.app.settlement,
      chains: [chain],
      logger: silentLogger,
    });
    for (const [i, p] of [badSignature, short].entries())
      expect(await facilitatorSettle(deps, facilitatorRequest(p), p.claimed.credit)).toMatchObject({
        success: false,
        errorReason: answered[i],
        transaction: "",
      });
  });
});

/** secp256k1's group order. */
const secp256k1N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The payment, its signature the high-s twin of its payer's (s → n − s, v flipped): the same signer, malleated. */
function withHighS(p: Payment): Payment {
  const signature = p.claimed.signature;
  const s = secp256k1N - BigInt(`0x${signature.slice(66, 130)}`);
  const v = Number.parseInt(signature.slice(130, 132), 16) === 27 ? 28 : 27;
  const twin = `${signature.slice(0, 66)}${s.toString(16).padStart(64, "0")}${v.toString(16)}` as Hex;
  return { ...p, claimed: { ...p.claimed, signature: twin } };
}

describe("an authorization our reverted batch left open, its window shut at the latest block only", () => {
  it("is left while the chain's last confirmed block is before its validBefore, and failed once that block is not", async () => {
    // A rail of three confirmations: the last two blocks may be mined again, a copy in them before its validBefore.
    const confirmed = { ...chain, confirmations: 3 };
    const { timestamp: now } = await gw.chain.publicClient.getBlock({ blockTag: "latest" });
    const endS = now + 1_000n;
    const p = await payment(await newPayer("lapsed at the latest block only"), 190n, undefined, {
      validBefore: endS,
    });
    const [result] = await settledWithoutGas([p], true);
    expect(result).toMatchObject({ ok: false, pending: true });
    const txHash = (await rowOf(p))!.tx_hash!;
    // Mined: one block before its validBefore, then two past it (the latest two, not confirmed yet).
    for (const at of [endS - 10n, endS + 1n, endS + 2n]) {
      await gw.chain.networkHelpers.time.setNextBlockTimestamp(at);
      await gw.chain.networkHelpers.mine(1);
    }
    // Before: failed "reverted" by the latest block's time, its payer's balance given back.
    await reconcile({}, silentLogger, confirmed);
    expect(await rowOf(p)).toMatchObject({ status: "submitted", tx_hash: txHash });
    // One block more: the last confirmed one is past its validBefore, so is every block any branch mines after it.
    await gw.chain.networkHelpers.time.setNextBlockTimestamp(endS + 3n);
    await gw.chain.networkHelpers.mine(1);
    await reconcile({}, silentLogger, confirmed);
    expect(await rowOf(p)).toMatchObject({ status: "failed", failure: "reverted", tx_hash: txHash });
  });
});

describe("an authorization the rail refused before sending it", () => {
  /** The invoices a payment described so has booked, the first first. */
  const invoicesOf = (description: string) =>
    gw.app.db.query<{ id: string; status: string }>(
      "SELECT id, status FROM invoices WHERE description = $1 ORDER BY created_at, id",
      [description],
    );

  /** The invoices once the deposit watcher (stopped here) has read the chain up to its head and credited them. */
  async function creditedOf(description: string) {
    await gw.rail.depositWatcher()!.catchUp(20);
    return invoicesOf(description);
  }

  /** The payer's payment of `value`, claimed, under a description of its own. */
  async function refusedPayment(name: string, value: bigint) {
    const payer = await newPayer(name, 0n);
    const p = await payment(payer, value);
    const description = `x402 refused before sending: ${name}`;
    const described = { ...p, claimed: { ...p.claimed, description } };
    await claimed(described);
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    // The payer holds nothing: the rail's simulation refuses it, and nothing is sent.
    expect(notOk(await settler.settle(described.claimed, described.requirements))).toMatchObject({
      refusal: "insufficient_funds",
    });
    expect(await rowOf(described)).toBeNull();
    const [invoice] = await invoicesOf(description);
    expect(invoice).toEqual({ id: expect.any(String), status: "open" });
    // Watched past the authorization's validBefore (years away): whoever holds it may mine it until then. Before, the
    // watch ended a month after the invoice's expiry, a day at most after it was booked.
    const [watched] = await gw.app.db.query<{ watch_until: Date }>(
      "SELECT watch_until FROM evm_deposits WHERE reference = $1",
      [invoice!.id],
    );
    expect(watched!.watch_until.getTime()).toBeGreaterThan(Number(validBefore) * 1000);
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, value],
    });
    return { payer, payment: described, description, settler };
  }

  it("and that someone else submits later is credited to its invoice, once", async () => {
    const { payer, payment: p, description } = await refusedPayment("refused, then mined by another", 600n);
    // Still the payer's signed transfer to the hot wallet: anyone holding it submits it once the payer is funded.
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    expect(await gw.tokenBalance(payer.address)).toBe(0n);
    // Before: the rail had bound the invoice to nothing, the watcher did not follow the nonce, and the hot wallet
    // kept the payer's 600 with no invoice credited.
    const [invoice, ...others] = await creditedOf(description);
    expect(others).toEqual([]);
    expect(invoice).toMatchObject({ status: "paid" });
  });

  it("and that the same payment sends again is credited to its new invoice, the first given up", async () => {
    const { payment: p, description, settler } = await refusedPayment("refused, then sent again", 700n);
    // The same authorization comes again: claimed and booked anew, its new invoice takes the first one's binding.
    await claimed(p);
    const result = await settler.settle(p.claimed, p.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    const invoices = await creditedOf(description);
    expect(invoices).toHaveLength(2);
    expect(invoices.find((invoice) => invoice.id === result.invoiceId)).toMatchObject({ status: "paid" });
    expect(invoices.find((invoice) => invoice.id !== result.invoiceId)).toMatchObject({ status: "open" });
    expect(await rowOf(p)).toMatchObject({ status: "settled", invoice_id: result.invoiceId });
  });

  it("and that someone else mined, credited, is not taken over by the same payment sent again after a reorg", async () => {
    const { payment: p, description, settler } = await refusedPayment("mined, then reorged away", 800n);
    const snapshot = await gw.chain.networkHelpers.takeSnapshot();
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    expect(await creditedOf(description)).toEqual([{ id: expect.any(String), status: "paid" }]);
    // A branch without the copy: the nonce reads unused again, before the watcher has read the reorg.
    await snapshot.restore();
    await claimed(p);
    const again = await settler.settle(p.claimed, p.requirements);
    await gw.chain.networkHelpers.mine(3); // the new branch longer than the one that had the copy
    // Before: the new invoice took the binding over; the reorg's removal of the copy found it (not_ours), the first
    // kept its credit, and our send credited the new one: one payment, two invoices paid.
    expect((await creditedOf(description)).map((invoice) => invoice.status)).toEqual(["reversed", "open"]);
    expect(notOk(again)).toMatchObject({ refusal: "invalid_exact_evm_nonce_already_used" });
  });

  it("because the database failed binding its invoice gives its claim back, and sent again is settled", async () => {
    // The rail's binding (its transaction's FOR UPDATE read of the invoice holding the nonce) fails once.
    const db = gw.app.db;
    const transaction = db.transaction;
    db.transaction = ((fn: Parameters<typeof transaction>[0]) =>
      transaction.call(db, (tx) =>
        fn(
          new Proxy(tx, {
            get(target, property, receiver) {
              const value = Reflect.get(target, property, receiver);
              if (property !== "query" || typeof value !== "function") return value;
              return (text: string, params?: unknown[]) => {
                if (!text.includes("FOR UPDATE") || !text.includes("auth_tx_hash IS NULL"))
                  return value.call(target, text, params);
                db.transaction = transaction;
                return Promise.reject(new Error("the database is unavailable (test)"));
              };
            },
          }),
        ),
      )) as typeof transaction;
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    const p = await claimed(await payment(await newPayer("binding failed"), 900n));
    const failed = notOk(await settler.settle(p.claimed, p.requirements));
    db.transaction = transaction;
    // Before: thrown, answered pending with the claim kept, which reconciliation never adopts (nothing was sent).
    expect(await rowOf(p)).toBeNull();
    expect(failed).toMatchObject({ refusal: "unexpected_settle_error" });
    expect(failed.pending).toBeUndefined();
    await claimed(p);
    const result = await settler.settle(p.claimed, p.requirements);
    if (!result.ok) throw new Error(`not settled: ${result.message}`);
    expect(await rowOf(p)).toMatchObject({ status: "settled", invoice_id: result.invoiceId });
  });

  it("of one amount is not taken over by another authorization of the same payer and nonce", async () => {
    const payer = await newPayer("two authorizations, one nonce", 0n);
    const nonce = keccak256(stringToHex(`reconcile one nonce ${payer.address}`));
    const signed = async (value: bigint, description: string) => {
      const p = await signedX402Payment(gw, chain, payer, value, {
        nonce,
        window: { validAfter: 0n, validBefore },
        description,
      });
      await claimed(p);
      return p;
    };
    const settler = createSingleSettler({ settlement: gw.app.settlement });
    // Both refused (the payer holds nothing), so neither is sent: the first binds its invoice to the nonce.
    const first = await signed(600n, "x402 refused before sending: 600 under the nonce");
    expect(notOk(await settler.settle(first.claimed, first.requirements))).toMatchObject({
      refusal: "insufficient_funds",
    });
    const second = await signed(5n, "x402 refused before sending: 5 under the same nonce");
    expect(notOk(await settler.settle(second.claimed, second.requirements))).toMatchObject({
      refusal: "insufficient_funds",
    });
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, 600n],
    });
    const copyTx = await submitCopy(first);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // Before: the 5's invoice took the binding over, and the 600 signed for the first was credited to it.
    expect(await creditedOf("x402 refused before sending: 600 under the nonce")).toEqual([
      { id: expect.any(String), status: "paid" },
    ]);
    expect(await creditedOf("x402 refused before sending: 5 under the same nonce")).toEqual([
      { id: expect.any(String), status: "open" },
    ]);
  });

  /**
   * A new payer's (`name`) payment of `value` settled at the facilitator and refused by the rail before sending (the
   * payer spends its balance once the facilitator has verified and claimed it: the rail's simulation refuses it), its
   * invoice left bound to the payer's nonce; then the payer funded again. `settle`: the same payment settled at the
   * facilitator (`request`, unless another is given), through `settler` when given (the single settler otherwise), for
   * `credit` (the payment's own unless named), reading `db` (the app's unless given), on x402 chain `on` (the test's
   * unless given). `payer`: the payer. `boundInvoice`: the status of the invoice the rail binds to the
   * payer's nonce; `boundInvoiceId`: its id. `drain`: the payer's balance sent away, so that the rail refuses it.
   */
  async function refusedAtFacilitator(name: string, value: bigint) {
    const payer = await newPayer(name, value);
    // Its window by the chain's clock where the tests above moved it ahead of the gateway's: verify and the rail agree.
    const { timestamp } = await gw.chain.publicClient.getBlock({ blockTag: "latest" });
    const startS = BigInt(Math.floor(Date.now() / 1000));
    const aheadS = timestamp > startS ? timestamp - startS : 0n;
    const nowMs = () => Date.now() + Number(aheadS) * 1000;
    const p = await payment(payer, value, payer, { validBefore: startS + aheadS + 300n });
    const a = p.claimed.authorization;
    const single = createSingleSettler({ settlement: gw.app.settlement, nowMs });
    const settle = ({
      settler,
      credit = p.claimed.credit,
      db = gw.app.db,
      on = chain,
      request = facilitatorRequest(p),
    }: {
      settler?: X402Settler;
      credit?: CreditTarget;
      db?: Db;
      on?: X402Chain;
      request?: FacilitatorRequest;
    } = {}) =>
      facilitatorSettle(
        createX402Deps({
          db,
          settlement: gw.app.settlement,
          chains: [on],
          logger: silentLogger,
          nowMs,
          ...(settler === undefined ? {} : { settler }),
        }),
        request,
        credit,
      );
    const drain = async () => {
      await gw.chain.networkHelpers.setBalance(payer.address, 10n ** 18n);
      await gw.send(payer, {
        address: chain.token,
        abi: testUsdAbi,
        functionName: "transfer",
        args: [gw.chain.accounts[0]!.address, value],
      });
    };
    const draining: X402Settler = {
      async settle(claimed, requirements) {
        await drain();
        return single.settle(claimed, requirements);
      },
    };
    expect(await settle({ settler: draining })).toMatchObject({
      success: false,
      errorReason: "insufficient_funds",
      transaction: "",
    });
    const bound = async () =>
      (
        await gw.app.db.query<{ id: string; status: string }>(
          `SELECT i.id, i.status FROM evm_deposits d JOIN invoices i ON i.id = d.reference
           WHERE d.auth_from = $1 AND d.auth_nonce = $2`,
          [a.from.toLowerCase(), a.nonce.toLowerCase()],
        )
      )[0];
    const boundInvoice = async () => (await bound())?.status;
    const boundInvoiceId = async () => (await bound())?.id;
    expect(await boundInvoice()).toBe("open");
    await gw.send(gw.chain.accounts[0]!, {
      address: chain.token,
      abi: testUsdAbi,
      functionName: "mint",
      args: [payer.address, value],
    });
    /** What the facilitator answers a settle the authorization's transfer `copyTx` paid. */
    const paidBy = (copyTx: Hex) => ({
      success: true,
      transaction: copyTx,
      network: p.requirements.network,
      payer: payer.address,
      amount: value.toString(),
    });
    return { p, payer, single, settle, boundInvoice, boundInvoiceId, paidBy, drain, value };
  }

  /** The answer pending while the authorization's transfer is mined and not credited yet. */
  const notCreditedYet = {
    success: false,
    errorReason: "unexpected_settle_error",
    errorMessage: expect.stringMatching(/not credited yet/),
    transaction: "",
  };

  it("at the facilitator, then mined by another: the same payment settled again is pending until credited, then paid", async () => {
    const { p, settle, boundInvoice, paidBy } = await refusedAtFacilitator(
      "refused at the facilitator, then mined by another",
      650n,
    );
    // Whoever holds the authorization mines it: the hot wallet has the payer's value.
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // Not credited yet (the watcher, stopped here, has not read it): pending. Before, a final "nonce already used",
    // and the payer, its money in the tenant's account once the watcher read it, signed anew and paid twice.
    expect(await settle()).toMatchObject(notCreditedYet);
    await gw.rail.depositWatcher()!.catchUp(20);
    expect(await boundInvoice()).toBe("paid");
    // Credited: the settlement, by the transfer that paid the invoice, as a settle retried after success answers.
    expect(await settle()).toEqual(paidBy(copyTx));
    // Another account of the tenant was credited nothing: refused as used, as before.
    expect(await settle({ credit: { ...p.claimed.credit, accountId: "acct_another" } })).toMatchObject({
      success: false,
      errorReason: "invalid_exact_evm_nonce_already_used",
    });
  });

  it("at the facilitator, then mined by another as it is settled again: the rail's refusal as used is pending, not final", async () => {
    const { p, single, settle, boundInvoice, paidBy } = await refusedAtFacilitator(
      "refused at the facilitator, mined as it is settled again",
      660n,
    );
    // Verified with its nonce unused, then mined by another before the rail reads it: the rail refuses it as used.
    let copyTx: Hex | undefined;
    const mining: X402Settler = {
      async settle(claimed, requirements) {
        copyTx = await submitCopy(p);
        await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx });
        return single.settle(claimed, requirements);
      },
    };
    // Before: a final "nonce already used", though the transfer pays the invoice the first settle left bound.
    expect(await settle({ settler: mining })).toMatchObject(notCreditedYet);
    await gw.rail.depositWatcher()!.catchUp(20);
    expect(await boundInvoice()).toBe("paid");
    expect(await settle()).toEqual(paidBy(copyTx!));
  });

  it("at the facilitator, its claim then left claimed (its give-back failed), then mined by another: the same payment settled again is pending until credited, then paid", async () => {
    const { p, settle, boundInvoice, boundInvoiceId, paidBy } = await refusedAtFacilitator(
      "refused at the facilitator, its claim left claimed",
      670n,
    );
    // As the rail's refusal leaves the claim when giving it back fails every attempt (settle.ts afterSent only logs),
    // or a submit that threw once the rail bound it: `claimed`, bound to the invoice, no transaction, for good —
    // neither sentAuthorization (no transaction) nor reconciliation (no send journaled) answers it.
    await claimed(p);
    await record(gw.app.db, chain, p.claimed.authorization, {
      status: "claimed",
      invoiceId: (await boundInvoiceId())!,
    });
    expect(await rowOf(p)).toMatchObject({ status: "claimed", tx_hash: null });
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    expect(await settle()).toMatchObject(notCreditedYet);
    await gw.rail.depositWatcher()!.catchUp(20);
    expect(await boundInvoice()).toBe("paid");
    // Before: the invoice the claim held was left out, and the payment, credited, was refused as a nonce already used
    // for as long as it was retried: the payer signed anew and paid twice.
    expect(await settle()).toEqual(paidBy(copyTx));
  });

  it("at the facilitator, then mined by another, settled again after the hot wallet's key rotated: pending until credited, then paid", async () => {
    const { p, payer, settle, boundInvoice, paidBy } = await refusedAtFacilitator(
      "refused at the facilitator, settled again after a key rotation",
      680n,
    );
    // The gateway restarted with another key: its payTo is the new wallet; the retry's requirements name the old one,
    // which the payer's authorization pays and its invoice was bound with.
    const rotated: X402Chain = { ...chain, hotWallet: gw.chain.accounts[7]!.address };
    const settleRotated = () => settle({ on: rotated });
    const payTo = { success: false, errorReason: "invalid_payment_requirements", transaction: "" };
    // Not mined: its nonce unused, it is refused (a payment to a wallet no longer the gateway's is never sent).
    expect(await settleRotated()).toMatchObject(payTo);
    expect(await boundInvoice()).toBe("open");
    // Whoever holds the authorization mines it: the old wallet has the payer's value.
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // Before: refused for its payTo, final, and the payer, its money in the tenant's account once the watcher read it,
    // signed anew and paid twice.
    expect(await settleRotated()).toMatchObject(notCreditedYet);
    await gw.rail.depositWatcher()!.catchUp(20);
    expect(await boundInvoice()).toBe("paid");
    expect(await settleRotated()).toEqual(paidBy(copyTx));
    // The payer's second authorization of the nonce, to an address of its own named as payTo: not the wallet the
    // invoice was bound with, so not answered by the transfer that paid it.
    const a = p.claimed.authorization;
    const own = await signedX402Payment(gw, { ...chain, hotWallet: payer.address }, payer, a.value, {
      nonce: a.nonce,
      window: { validAfter: a.validAfter, validBefore: a.validBefore },
      description: "the payer's own authorization of a nonce bound before a key rotation",
    });
    const ownRequest = facilitatorRequest(own);
    ownRequest.paymentRequirements.payTo = payer.address;
    expect(await settle({ on: rotated, request: ownRequest })).toMatchObject(payTo);
    // Another account of the tenant was credited nothing: refused, as before the rotation.
    expect(
      await settle({ credit: { ...p.claimed.credit, accountId: "acct_another" }, on: rotated }),
    ).toMatchObject(payTo);
  });

  it("at the facilitator, then mined by another, settled again while the database cannot read its invoice: pending, not a 500", async () => {
    const { p, settle } = await refusedAtFacilitator(
      "refused at the facilitator, its invoice unreadable",
      680n,
    );
    const copyTx = await submitCopy(p);
    expect((await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx })).status).toBe("success");
    // The read of the invoices bound to the payer's nonce (store.ts unsentBoundTo) fails; every other read answers.
    const db = new Proxy(gw.app.db, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== "query" || typeof value !== "function") return value;
        return (text: string, params?: unknown[]) =>
          text.includes("FROM evm_deposits d") && text.includes("i.account_id = $6")
            ? Promise.reject(new Error("the database is unavailable (test)"))
            : value.call(target, text, params);
      },
    });
    // Verify reads the nonce used, and the settle asks what an earlier settle left bound. Before: thrown (a 500),
    // where the same fault after the rail's refusal as used was answered pending.
    expect(await settle({ db })).toMatchObject({
      success: false,
      errorReason: "unexpected_settle_error",
      errorMessage: expect.stringMatching(/cannot be read now/),
      transaction: "",
    });
  });

  it("at the facilitator, bound anew and refused for another reason as a copy is mined: pending until credited, then paid", async () => {
    const { p, single, settle, boundInvoice, boundInvoiceId, paidBy, drain, value } =
      await refusedAtFacilitator("refused at the facilitator, bound anew as a copy is mined", 690n);
    const first = await boundInvoiceId();
    // Verified with its nonce unused; the rail binds the new invoice to it and refuses it before sending (the payer's
    // balance gone: as an estimate that reverts because a copy was mined first, authorization_mismatch), and whoever
    // holds the authorization mines it meanwhile.
    let copyTx: Hex | undefined;
    const refusedAsMined: X402Settler = {
      async settle(claimed, requirements) {
        await drain();
        const result = await single.settle(claimed, requirements);
        expect(notOk(result)).toMatchObject({
          refusal: "insufficient_funds",
          unsentInvoiceId: expect.any(String),
        });
        await gw.send(gw.chain.accounts[0]!, {
          address: chain.token,
          abi: testUsdAbi,
          functionName: "mint",
          args: [p.claimed.authorization.from, value],
        });
        copyTx = await submitCopy(p);
        await gw.chain.publicClient.waitForTransactionReceipt({ hash: copyTx });
        return result;
      },
    };
    // Before: a final insufficient_funds, though the transfer pays the new invoice, this account's.
    expect(await settle({ settler: refusedAsMined })).toMatchObject(notCreditedYet);
    expect(await boundInvoiceId()).not.toBe(first);
    await gw.rail.depositWatcher()!.catchUp(20);
    expect(await boundInvoice()).toBe("paid");
    expect(await settle()).toEqual(paidBy(copyTx!));
  });
});
