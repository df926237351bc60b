// Rewrites the ABI block of adapters/evm/contracts.ts from the Hardhat artifacts, so that viem infers
// types from `as const` literals. Run after changing a contract's interface:
//   npm run compile && node test/contracts/write-abis.ts
// test/contracts/abis.test.ts fails while the block and the artifacts disagree.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { contractNames, readContractArtifact } from "../../adapters/evm/contracts.ts";

const root = path.join(import.meta.dirname, "..", "..");
const file = path.join(root, "adapters", "evm", "contracts.ts");
const begin = "// <generated-abis> (node test/contracts/write-abis.ts)";
const end = "// </generated-abis>";

const source = await readFile(file, "utf8");
const from = source.indexOf(begin);
const to = source.indexOf(end);
if (from < 0 || to < from) throw new Error(`write-abis: markers not found in ${file}`);

const constNames = { TestUSD: "testUsdAbi", RevenueSplitter: "revenueSplitterAbi" } as const;
const blocks: string[] = [];
for (const name of contractNames) {
  const artifact = await readContractArtifact(name);
  blocks.push(`export const ${constNames[name]} = ${JSON.stringify(artifact.abi)} as const;`);
}
const testUsd = await readContractArtifact("TestUSD");
const testUsdErrors = (testUsd.abi as { type: string }[]).filter((item) => item.type === "error");
blocks.push(
  "/** TestUSD's (ERC-20, ERC-3009, permit) errors: add to the splitter's ABI to decode a token revert. */",
  `export const testUsdErrorsAbi = ${JSON.stringify(testUsdErrors)} as const;`,
);
await writeFile(file, `${source.slice(0, from)}${begin}\n${blocks.join("\n")}\n${source.slice(to)}`);
console.log(`write-abis: wrote ${contractNames.join(", ")} into ${path.relative(root, file)}`);
