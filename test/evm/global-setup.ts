// Builds the contracts (a no-op when the artifacts are current) so the tests never run stale bytecode.
import hre from "hardhat";

export default async function setup(): Promise<void> {
  await hre.tasks.getTask("build").run({ noTests: true, quiet: true });
}
