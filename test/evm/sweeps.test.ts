// The sweeps' pass looks at every open sweep: one whose turn throws is logged and tried again next pass, the others
// followed meanwhile.
import { keccak256 } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Logger } from "../../core/index.ts";
import { sweepDepositsOnce } from "../../gateway/settlement/index.ts";
import { recordingLogger } from "../support/recording-logger.ts";
import { anotherProcessRail, type Gateway, startGateway } from "./support.ts";

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.app.close();
});

/** Another process's rail taking deposits on the gateway's factory (nothing polled: its sweeps alone are used). */
const sweepingRail = (logger: Logger) =>
  anotherProcessRail(gw, {
    logger,
    deposits: {
      factory: gw.chain.contracts.forwarderFactory,
      startBlock: 0n,
      pollIntervalMs: 3_600_000,
      lateWatchMs: 3_600_000,
      sweepSaltsMax: 50,
    },
  });

const sweepDeps = () => ({ db: gw.app.db, ledger: gw.app.ledger, accounts: gw.app.settlement.accounts });

/** An open sweep of no forwarder under `key`, started at `startedAt` (the pass follows the open ones in that order). */
async function openSweep(key: string, startedAt: string): Promise<void> {
  await gw.app.db.query(
    "INSERT INTO evm_sweeps (key, chain_id, token, salts, started_at) VALUES ($1, $2, $3, '[]', $4)",
    [key, gw.chain.chain.id, gw.chain.contracts.testUsd.toLowerCase(), startedAt],
  );
}

const doneOf = async (key: string) => {
  const [sweep] = await gw.app.db.query<{ done: boolean }>(
    "SELECT done_at IS NOT NULL AS done FROM evm_sweeps WHERE key = $1",
    [key],
  );
  return sweep?.done;
};

describe("open sweeps, one of which throws", () => {
  it("follows the others: the one that throws is logged and left for the next pass", async () => {
    const chainId = gw.chain.chain.id;
    const account = gw.chain.walletClient.account;
    // The first: its key's send is another chain's, which the journal refuses to broadcast here (it throws).
    const throwing = `sweep:${chainId}:another-chains-send`;
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, '0x02', 0, $4)",
      [throwing, chainId + 1, `0x${"22".repeat(32)}`, account.address.toLowerCase()],
    );
    await openSweep(throwing, "2000-01-01T00:00:00Z");
    // The second: signed and journaled under nonce 0, never broadcast; long passed, so it is done as never mined.
    const raw = await account.signTransaction!({
      chainId,
      type: "eip1559",
      nonce: 0,
      to: gw.chain.contracts.forwarderFactory,
      gas: 100_000n,
      maxFeePerGas: 1n,
      maxPriorityFeePerGas: 1n,
    });
    const neverMined = `sweep:${chainId}:never-mined-behind`;
    await gw.app.db.query(
      "INSERT INTO evm_sends (attempt_id, chain_id, tx_hash, raw_tx, nonce, wallet) VALUES ($1, $2, $3, $4, 0, $5)",
      [neverMined, chainId, keccak256(raw), raw, account.address.toLowerCase()],
    );
    await openSweep(neverMined, "2000-01-02T00:00:00Z");
    // Blocks with their state (the wallet's count is read at one of them: hardhat_mine's blocks read 0).
    for (let i = 0; i < 10; i += 1)
      await gw.chain.provider.request({ method: "evm_mine", params: [] } as never);
    const { logger, lines } = recordingLogger();
    try {
      // Before: the first's throw ended the pass, and the second was never looked at.
      await expect(sweepDepositsOnce(sweepDeps(), sweepingRail(logger), chainId)).resolves.toMatchObject({
        swept: [],
      });
      expect(await doneOf(neverMined)).toBe(true);
      expect(await doneOf(throwing)).toBe(false);
      const said = lines.filter((line) => line.level === "error");
      expect(said).toHaveLength(1);
      expect(said[0]!.fields).toMatchObject({ key: throwing });
      expect(String(said[0]!.fields.error)).toMatch(/is chain \d+'s, not chain/);
    } finally {
      await gw.app.db.query("UPDATE evm_sweeps SET done_at = now() WHERE key = $1", [throwing]);
    }
  });
});
