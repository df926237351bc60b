// `npm run regtest`: builds (or reuses) btcd/lnd, starts btcd and four lnd nodes (gateway, payer, payee,
// remote) with channels payer → gateway → payee → payer and payee → remote (a hop that charges a fee),
// prints how to point the gateway at its node, and tears everything down on Ctrl-C.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { ensureLightningBinaries, nodeNames, startRegtestCluster } from "./lightning/index.ts";

const log = (line: string) => process.stderr.write(`${line}\n`);

// A signal while the network starts: exit, which stops every daemon started so far (process.ts exitsWithThisProcess
// stops its children on exit). Node's default for SIGINT/SIGTERM ends the process without an exit event, and left
// btcd and the lnd nodes running. Replaced by an orderly shutdown once the network is up.
const whileStarting = (signal: NodeJS.Signals) => {
  log(`regtest: ${signal} while starting; stopping what started`);
  process.exit(130);
};
process.on("SIGINT", whileStarting);
process.on("SIGTERM", whileStarting);

const binaries = await ensureLightningBinaries({ onProgress: log });
log(
  `regtest: binaries ${binaries.cached ? "from cache" : "built"} in ${(binaries.durationMs / 1000).toFixed(1)} s`,
);
const cluster = await startRegtestCluster({ binaries, log });
const { nodes } = cluster.describe();
const gateway = nodes.gateway;

const env = [
  `LND_SOCKET=${gateway.socket}`,
  `LND_CERT_PATH=${gateway.certPath}`,
  `LND_MACAROON_PATH=${gateway.macaroonPath}`,
  `LIGHTNING_JOURNAL_PATH=${path.join(cluster.directory, "gateway-journal.jsonl")}`,
];
const envFile = path.join(cluster.directory, "gateway.env");
await writeFile(envFile, `${env.join("\n")}\n`);

const lncli = (name: (typeof nodeNames)[number]) =>
  `${binaries.lncli} --lnddir=${path.dirname(nodes[name].certPath)} --network=regtest --rpcserver=${nodes[name].socket}`;

console.log(`
Lightning regtest network is up (${(cluster.startDurationMs / 1000).toFixed(1)} s). Data: ${cluster.directory}

Point the gateway at its node (also in ${envFile}):

  ${env.map((line) => `export ${line}`).join("\n  ")}
  npm start

Nodes:
${nodeNames.map((name) => `  ${name.padEnd(8)} ${nodes[name].publicKey} rpc ${nodes[name].socket} p2p ${nodes[name].p2pSocket}`).join("\n")}

Try it:
  ${lncli("payee")} addinvoice --amt 1000
  ${lncli("payer")} payinvoice --force <invoice>
  ${binaries.btcctl} --regtest --rpcserver=${cluster.btcd.rpcHost} --rpcuser=${cluster.btcd.rpcUser} --rpcpass=${cluster.btcd.rpcPass} --rpccert=${cluster.btcd.certPath} generate 1

Ctrl-C stops everything and deletes the data directory.
`);

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  log(`regtest: ${signal}, stopping lnd and btcd`);
  await cluster.stop();
  log("regtest: stopped");
  process.exit(0);
};
process.off("SIGINT", whileStarting);
process.off("SIGTERM", whileStarting);
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
// Keep the process alive until a signal arrives.
setInterval(() => {}, 1 << 30);
