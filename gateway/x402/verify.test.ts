// The requirements as verification reads them (verify.ts parsePayment): a window longer than a day is refused at
// /verify, to the seller who asked for it, with a stable code; before, each payer's authorization signed for it was
// refused later, as its validBefore.
import type { Address } from "viem";
import { describe, expect, it } from "vitest";
import { assets } from "../../core/index.ts";
import type { ChainRegistry, X402Chain } from "./chains.ts";
import { parsePayment } from "./verify.ts";

const token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const hotWallet: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const network = "eip155:31337";
const chain = { rail: "evm", chainId: 31337, token, hotWallet, asset: assets.USDC } as unknown as X402Chain;
const chains = {
  chains: [chain],
  byRail: (rail: string) => (rail === "evm" ? chain : null),
  byNetwork: (name: string) => (name === network ? chain : null),
} as unknown as ChainRegistry;

const requirements = (maxTimeoutSeconds: number) => ({
  scheme: "exact",
  network,
  amount: "10000",
  asset: token,
  payTo: hotWallet,
  maxTimeoutSeconds,
  extra: { name: "TestUSD", version: "1" },
});
const payload = (maxTimeoutSeconds: number) => ({
  x402Version: 2,
  accepted: requirements(maxTimeoutSeconds),
  payload: {},
});

describe("parsePayment's maxTimeoutSeconds", () => {
  it("takes a day at most, a fraction rounded down", () => {
    for (const [given, taken] of [
      [300, 300n],
      [86_400, 86_400n],
      [86_400.9, 86_400n],
    ] as const) {
      const parsed = parsePayment(payload(given), requirements(given), chains);
      expect(parsed).toMatchObject({ ok: true, requirements: { maxTimeoutSeconds: taken } });
    }
  });

  it("refuses more than a day as invalid_payment_requirements", () => {
    for (const given of [86_401, 3 * 86_400, 1e300]) {
      expect(parsePayment(payload(given), requirements(given), chains)).toEqual({
        ok: false,
        refusal: "invalid_payment_requirements",
        message: "maxTimeoutSeconds must be at most 86400",
      });
    }
  });
});
