// `npm start`'s paywalled demo, run as a user would: `node gateway/main.ts` as its own process (a free PORT and
// EVM_EMBEDDED_RPC_PORT, PGlite in a directory), the printed curl answered 402 with PAYMENT-REQUIRED, the printed
// command (examples/pay.ts, switchyard/pay) paying it: served 200 with the content, the demo paywall's account
// credited once with what was paid; a restart on the same database keeps the same paywall.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type Address, createPublicClient, http } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { priceFeedAbi } from "../../gateway/rates/index.ts";
import { freePort } from "../../scripts/lib/free-port.ts";

const root = path.join(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const startWithinMs = 120_000;

type Started = { child: ChildProcess; output: () => string };

function startGateway(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, ["gateway/main.ts"], { cwd: root, env: { ...process.env, ...env } });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (Date.now() - startedAt > startWithinMs) {
        clearInterval(timer);
        child.kill("SIGTERM");
        reject(new Error(`no paying command printed within ${startWithinMs} ms:\n${output}`));
      } else if (/npx node examples\/pay\.ts \S+\n/.test(output)) {
        clearInterval(timer);
        resolve({ child, output: () => output });
      }
    }, 100);
    child.once("exit", (code) => {
      clearInterval(timer);
      reject(new Error(`gateway/main.ts exited ${code}:\n${output}`));
    });
  });
}

async function stop(started: Started | null): Promise<void> {
  if (started === null || started.child.exitCode !== null) return;
  const exited = new Promise((resolve) => started.child.once("exit", resolve));
  started.child.kill("SIGTERM");
  await exited;
}

/** A printed command line, run by the shell as a user pastes it, with this Node first on the PATH. */
async function shell(line: string): Promise<string> {
  const PATH = `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`;
  const { stdout } = await run("sh", ["-c", line], { cwd: root, env: { ...process.env, PATH } });
  return stdout;
}

describe("npm start's paywalled demo", () => {
  let dir = "";
  let env: Record<string, string> = {};
  let gateway: Started | null = null;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "switchyard-demo-paywall-"));
    env = {
      PGLITE_DIR: path.join(dir, "db"),
      PORT: String(await freePort()),
      EVM_EMBEDDED_RPC_PORT: String(await freePort()),
      LOG_LEVEL: "warn",
    };
    gateway = await startGateway(env);
  });
  afterAll(async () => {
    await stop(gateway);
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("answers a browser's preflight of the paid route with the CORS headers of the payment", async () => {
    const answer = await fetch(`http://127.0.0.1:${env.PORT}/demo/paid/report`, {
      method: "OPTIONS",
      headers: {
        origin: "https://wallet.example",
        "access-control-request-method": "GET",
        "access-control-request-headers": "payment-signature, access-control-expose-headers",
      },
    });
    expect(answer.status).toBe(204);
    expect(answer.headers.get("access-control-allow-origin")).toBe("*");
    const allowed = answer.headers.get("access-control-allow-headers") ?? "";
    for (const name of ["PAYMENT-SIGNATURE", "X-PAYMENT", "Authorization", "Access-Control-Expose-Headers"])
      expect(allowed).toContain(name);
    const exposed = answer.headers.get("access-control-expose-headers") ?? "";
    for (const name of ["PAYMENT-REQUIRED", "PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE", "WWW-Authenticate"])
      expect(exposed).toContain(name);
  });

  it("prints a curl answered 402 and a command that pays it once, to the paywall's account", async () => {
    const text = gateway!.output();
    const curl = /^ {2}(curl -si \S+\/demo\/paid\/report)$/m.exec(text)?.[1];
    const pay = /^ {2}(RPC_URL=\S+ TOKEN=0x[0-9a-fA-F]{40} npx node examples\/pay\.ts \S+)$/m.exec(text)?.[1];
    const paywallId = /paywall (pwl_\w+), 0\.01 USD a request: x402 on evm credited to (acct_\w+)/.exec(text);
    const apiKey = /API key: +(sk_test_\S+)/.exec(text)?.[1];
    expect(curl, text).toBeDefined();
    expect(pay, text).toBeDefined();
    expect(paywallId, text).not.toBeNull();
    const merchant = paywallId![2]!;
    const base = `http://127.0.0.1:${env.PORT}`;
    const auth = { Authorization: `Bearer ${apiKey}` };
    const paywall = await (await fetch(`${base}/v1/paywalls/${paywallId![1]}`, { headers: auth })).json();
    expect(paywall).toMatchObject({ resource: "/demo/paid/*", price: { amount: "0.01", asset: "USD" } });
    const posted = async () => {
      const balance = (await (
        await fetch(`${base}/v1/accounts/${merchant}/balance`, { headers: auth })
      ).json()) as { posted: string };
      return BigInt(balance.posted.replace(".", ""));
    };
    const before = await posted();

    const challenge = await shell(curl!);
    expect(challenge).toMatch(/^HTTP\/1\.1 402 Payment Required\r?$/m);
    expect(challenge).toMatch(/^payment-required: [A-Za-z0-9+/=]+\r?$/im);
    expect(await posted()).toBe(before);

    const paid = await shell(pay!);
    expect(paid).toMatch(/^status: 200$/m);
    expect(paid).toMatch(/^body: \{"resource":"report","content":"the paid content of the demo"\}$/m);
    const receipt = JSON.parse(/^PAYMENT-RESPONSE: (.*)$/m.exec(paid)?.[1] ?? "null");
    expect(receipt).toMatchObject({ success: true, transaction: expect.stringMatching(/^0x[0-9a-f]{64}$/) });
    const amount = BigInt(/^paid: (\d+) units of /m.exec(paid)?.[1] ?? "0");
    expect(amount).toBe(10_000n); // 1 cent in TestUSD's 6 decimals, at development's rate of 1
    // The settlement's booking may follow the receipt; then nothing more (credited once).
    const deadline = Date.now() + 15_000;
    while ((await posted()) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await posted()).toBe(before + amount);
    await new Promise((r) => setTimeout(r, 500));
    expect(await posted()).toBe(before + amount);
    const transactions = (await (
      await fetch(`${base}/v1/accounts/${merchant}/transactions?limit=10`, { headers: auth })
    ).json()) as { data: unknown[] };
    expect(transactions.data).toHaveLength(1);

    // A restart on the same database: the same paywall, not a second one.
    await stop(gateway);
    gateway = await startGateway(env);
    expect(gateway.output()).toContain(`paywall ${paywallId![1]}, `);
  });

  it("prints the price feeds it deployed and a command that moves ETH's, which works as printed", async () => {
    const text = gateway!.output();
    const feeds =
      /price feeds deployed at this start on rail evm: ETH (0x[0-9a-fA-F]{40}), BTC (0x[0-9a-fA-F]{40})\./.exec(
        text,
      );
    const move =
      /^ {2}(EVM_RPC_URL=\S+ EVM_HOT_WALLET_KEY=0x[0-9a-f]{64} npm run price-feed -- ETH 3100 --feed (0x[0-9a-fA-F]{40}))$/m.exec(
        text,
      );
    expect(feeds, text).not.toBeNull();
    expect(move, text).not.toBeNull();
    expect(move![2]).toBe(feeds![1]);
    const output = await shell(move![1]!);
    // npm's own lines ("> switchyard@… price-feed") come first; the command's JSON after them.
    const printed = JSON.parse(output.slice(output.indexOf("{"))) as Record<string, unknown>;
    expect(printed).toMatchObject({ asset: "ETH", roundId: "2", answer: "310000000000" });
    // What the gateway's rates read: the feed at the printed address, on the chain it serves.
    const client = createPublicClient({ transport: http(`http://127.0.0.1:${env.EVM_EMBEDDED_RPC_PORT}`) });
    const [, answer] = await client.readContract({
      address: feeds![1] as Address,
      abi: priceFeedAbi,
      functionName: "latestRoundData",
    });
    expect(answer).toBe(310_000_000_000n);
  });
});
