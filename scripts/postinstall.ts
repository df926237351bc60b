// npm runs `npm install` with the machine's own node (20 on our machines). npm then skips optional
// platform packages whose `engines` want node >= 22 — among them the native binding of Hardhat's EDR.
// Lifecycle scripts run with node_modules/.bin first on PATH, so here `node` is the project's Node 24:
// when the binding is missing, install once more under Node 24 so that npm's engine check passes.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// Checked in a fresh process: a failed native load leaves state behind in this one.
function edrLoads(): boolean {
  try {
    execFileSync(
      process.execPath,
      ["-e", `require(${JSON.stringify(require.resolve("@nomicfoundation/edr"))})`],
      {
        stdio: "ignore",
      },
    );
    return true;
  } catch {
    return false; // missing or unloadable binding: the caller installs it
  }
}

if (process.env.SWITCHYARD_POSTINSTALL !== "1" && !edrLoads()) {
  console.log(`postinstall: installing platform packages again under node ${process.version}`);
  execFileSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund"], {
    stdio: "inherit",
    env: { ...process.env, SWITCHYARD_POSTINSTALL: "1" },
  });
  if (!edrLoads()) {
    console.error("postinstall: @nomicfoundation/edr still fails to load; Hardhat will not run");
    process.exit(1);
  }
}
