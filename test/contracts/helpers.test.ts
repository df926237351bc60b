// The pure helpers of adapters/evm (splits.ts, typed-data.ts) that must agree with the contracts (checked on
// chain in flows.test.ts) and with the gateway's ids.
import fc from "fast-check";
import { type Address, getAddress } from "viem";
import { describe, expect, it } from "vitest";
import {
  authorizationNonceOf,
  canonicalSplit,
  idFromReference,
  referenceFromId,
  referenceTextBytesMax,
  splitIdOf,
} from "../../adapters/evm/index.ts";

const address = (n: number) => getAddress(`0x${n.toString(16).padStart(40, "0")}`);

describe("references", () => {
  it("carry a gateway id both ways", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{3,4}_[0-9a-hjkmnp-tv-z]{26}$/), (id) => {
        expect(idFromReference(referenceFromId(id))).toBe(id);
        expect(referenceFromId(id)).toMatch(/^0x[0-9a-f]{64}$/);
      }),
      { seed: 11 },
    );
  });

  it("refuse text longer than a bytes32", () => {
    expect(() => referenceFromId("x".repeat(referenceTextBytesMax + 1))).toThrow(RangeError);
  });
});

describe("splits", () => {
  it("canonicalSplit sorts recipients ascending and keeps each share with its recipient", () => {
    const split = canonicalSplit({
      recipients: [address(3), address(1), address(2)],
      basisPoints: [5000, 3000, 2000],
    });
    expect(split).toEqual({
      recipients: [address(1), address(2), address(3)],
      basisPoints: [3000, 2000, 5000],
    });
  });

  it("the split id depends on order and shares, so only the canonical order is one split", () => {
    const recipients: Address[] = [address(1), address(2)];
    expect(splitIdOf(recipients, [5000, 5000])).not.toBe(splitIdOf([address(2), address(1)], [5000, 5000]));
    expect(splitIdOf(recipients, [5000, 5000])).not.toBe(splitIdOf(recipients, [4000, 6000]));
  });

  it("binds an authorization nonce to the split and the reference", () => {
    const split = splitIdOf([address(1)], [10_000]);
    const ref = referenceFromId("pay_01jd0000000000000000000001");
    expect(authorizationNonceOf(split, ref)).not.toBe(
      authorizationNonceOf(split, referenceFromId("pay_01jd0000000000000000000002")),
    );
    expect(authorizationNonceOf(split, ref)).not.toBe(
      authorizationNonceOf(splitIdOf([address(2)], [10_000]), ref),
    );
  });
});
