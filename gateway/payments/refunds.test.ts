// The pure parts of refunds: a BOLT11 invoice's amount read from its human-readable part (the specification's
// examples), and the statuses a refund may move between.
import { describe, expect, it } from "vitest";
import { bolt11AmountMsat } from "./refunds.ts";
import { refundCanMove } from "./refunds-types.ts";

describe("bolt11AmountMsat", () => {
  it("reads the amount of the specification's examples, in millisatoshi", () => {
    // 2500u: 2,500 micro-BTC = 250,000 sat.
    expect(
      bolt11AmountMsat(
        "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh",
      ),
    ).toBe(250_000_000n);
    // 20m: 20 milli-BTC = 2,000,000 sat.
    expect(bolt11AmountMsat("lnbc20m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypq")).toBe(
      2_000_000_000n,
    );
    // 9678785340p: pico-BTC, a tenth of a millisatoshi each.
    expect(
      bolt11AmountMsat("lnbc9678785340p1pwmna7lpp5gc3xfm08u9qy06djf8dfflhugl6p7lgza6dsjxq454gxhj9t7a0s"),
    ).toBe(967_878_534n);
    // Testnet and regtest prefixes, nano-BTC.
    expect(bolt11AmountMsat("lntb20n1pqqqqqq")).toBe(2_000n);
    expect(bolt11AmountMsat("lnbcrt2500n1pqqqqqq")).toBe(250_000n);
    // Whole BTC without a multiplier.
    expect(bolt11AmountMsat("lnbc2pqqqqqq1qqqq")).toBe("invalid");
    expect(bolt11AmountMsat("lnbcrt21pqqqqqq")).toBe(200_000_000_000n);
  });

  it("says an invoice names no amount, and refuses what is not an invoice's prefix", () => {
    expect(
      bolt11AmountMsat("lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypq"),
    ).toBeNull();
    expect(bolt11AmountMsat("LNBCRT1PQQQQQQ")).toBeNull();
    // A pico amount that is not a whole millisatoshi.
    expect(bolt11AmountMsat("lnbc2501p1pqqqqqq")).toBe("invalid");
    expect(bolt11AmountMsat("lnxx10n1pqqqqqq")).toBe("invalid");
    expect(bolt11AmountMsat("bitcoin:bc1q")).toBe("invalid");
    // A data part holding a character bech32 does not have (b, i, o).
    expect(bolt11AmountMsat("lnbcrt10n1pqbqq")).toBe("invalid");
  });
});

describe("refundCanMove", () => {
  it("lets a pending refund end either way, a succeeded one fail later (its provider's word), a failed one stay", () => {
    expect(refundCanMove("pending", "succeeded")).toBe(true);
    expect(refundCanMove("pending", "failed")).toBe(true);
    expect(refundCanMove("succeeded", "failed")).toBe(true);
    expect(refundCanMove("succeeded", "pending")).toBe(false);
    expect(refundCanMove("failed", "succeeded")).toBe(false);
    expect(refundCanMove("failed", "pending")).toBe(false);
  });
});
