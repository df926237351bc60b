import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { usdcRequirement } from "../../test/support/x402-requirement.ts";
import { MalformedChallengeError } from "./errors.ts";
import { viemPayer } from "./payers.ts";
import {
  createX402Payment,
  encodeBase64Json,
  parseX402Challenge,
  unpayableReason,
  validSecondsMaxDefault,
} from "./x402.ts";

const requirement = usdcRequirement;

describe("parseX402Challenge", () => {
  it("reads the v2 header first, keeping the requirement as sent for `accepted`", () => {
    const headers = new Headers({
      "payment-required": encodeBase64Json({
        x402Version: 2,
        resource: { url: "x" },
        accepts: [requirement],
      }),
    });
    const challenge = parseX402Challenge(headers, JSON.stringify({ x402Version: 1, accepts: [] }))!;
    expect(challenge.version).toBe(2);
    expect(challenge.offers[0]).toMatchObject({ chainId: 84_532, caip2: "eip155:84532", amount: 10_000n });
    expect(challenge.offers[0]!.requirement).toEqual(requirement);
    expect(unpayableReason(challenge.offers[0]!)).toBeNull();
  });

  it("reads a v1 body by its network name; a 402 without x402 is null", () => {
    const { amount: _, network: __, ...rest } = requirement;
    const v1 = {
      ...rest,
      network: "base-sepolia",
      maxAmountRequired: "10000",
      resource: "http://x/",
      description: "",
    };
    const challenge = parseX402Challenge(new Headers(), JSON.stringify({ x402Version: 1, accepts: [v1] }))!;
    expect(challenge.offers[0]).toMatchObject({ version: 1, caip2: "eip155:84532", amount: 10_000n });
    expect(parseX402Challenge(new Headers(), "{}")).toBeNull();
    expect(parseX402Challenge(new Headers(), null)).toBeNull();
  });

  it("an undecodable header, a body without accepts, or only unreadable entries is malformed", () => {
    expect(() => parseX402Challenge(new Headers({ "payment-required": "%%%" }), null)).toThrow(
      MalformedChallengeError,
    );
    expect(() => parseX402Challenge(new Headers(), JSON.stringify({ x402Version: 1 }))).toThrow(
      MalformedChallengeError,
    );
    const bad = encodeBase64Json({ x402Version: 2, accepts: [{ ...requirement, amount: "1.5" }] });
    expect(() => parseX402Challenge(new Headers({ "payment-required": bad }), null)).toThrow(
      MalformedChallengeError,
    );
  });

  it("an offer without its EIP-712 domain or on another transfer method cannot be paid", () => {
    const headers = (extra: Record<string, unknown>) =>
      new Headers({
        "payment-required": encodeBase64Json({ x402Version: 2, accepts: [{ ...requirement, extra }] }),
      });
    expect(unpayableReason(parseX402Challenge(headers({}), null)!.offers[0]!)).toMatch(/EIP-712/);
    const permit2 = { name: "USDC", version: "2", assetTransferMethod: "permit2" };
    expect(unpayableReason(parseX402Challenge(headers(permit2), null)!.offers[0]!)).toMatch(/permit2/);
  });
});

describe("createX402Payment", () => {
  it("signs for at most validSecondsMax whatever maxTimeoutSeconds the server asks", async () => {
    const account = privateKeyToAccount(`0x${"11".repeat(32)}`);
    const signWith = async (maxTimeoutSeconds: number, validSecondsMax?: number) => {
      const header = encodeBase64Json({
        x402Version: 2,
        resource: { url: "x" },
        accepts: [{ ...requirement, maxTimeoutSeconds }],
      });
      const challenge = parseX402Challenge(new Headers({ "payment-required": header }), null)!;
      const payment = await createX402Payment({
        payer: viemPayer(account),
        challenge,
        offer: challenge.offers[0]!,
        nowMs: 1_800_000_000_000,
        nonce: `0x${"22".repeat(32)}`,
        ...(validSecondsMax === undefined ? {} : { validSecondsMax }),
      });
      const sent = JSON.parse(Buffer.from(payment.value, "base64").toString()) as {
        payload: { authorization: { validBefore: string } };
      };
      return BigInt(sent.payload.authorization.validBefore) - 1_800_000_000n;
    };
    expect(await signWith(60)).toBe(60n);
    expect(await signWith(9_000_000_000_000_000)).toBe(BigInt(validSecondsMaxDefault));
    expect(await signWith(3_600, 120)).toBe(120n);
  });
});
