// What the rail reports it holds, from one ListChannels answer as LND gives it (`lightning`'s gRPC options: amounts
// as strings of sat). The figure against a real LND is test/lightning/reconciliation.test.ts.
import { describe, expect, it } from "vitest";
import { LightningRailError } from "./errors.ts";
import { heldInChannels } from "./rail.ts";

/**
 * A channel the node opened, just open: 2,000,000 sat at 2,500 sat/kw on an anchors commitment (weight 1,124: a fee
 * of 2,810 sat), set aside with the two anchors (660 sat) out of the node's balance. The peer has no output yet, so
 * the commitment leaves its anchor out, and LND's commit_fee (the capacity less the outputs) takes it in: 3,140.
 */
const opened = {
  channel_point: "aa:0",
  initiator: true,
  commitment_type: "ANCHORS",
  capacity: "2000000",
  local_balance: "1996530",
  remote_balance: "0",
  commit_fee: "3140",
  fee_per_kw: "2500",
  pending_htlcs: [] as unknown[],
};

describe("heldInChannels", () => {
  it("counts a channel the node opened at its capacity less the peer's balance: the fee and anchors it set aside are the operator's", () => {
    expect(heldInChannels([opened])).toBe(2_000_000_000n);
  });

  it("counts an HTLC in flight out of neither side, and the commitment fee it adds as the node's", () => {
    // 2,500,000 sat paid out, 10,000 in flight: the HTLC adds 172 weight units (430 sat at 2,500 sat/kw) to the fee,
    // which the node pays out of its balance.
    const paying = {
      ...opened,
      capacity: "10000000",
      local_balance: String(10_000_000 - 2_500_000 - 10_000 - (2_810 + 430) - 660),
      remote_balance: "2500000",
      commit_fee: "3240",
      pending_htlcs: [{ incoming: false, amount: "10000" }],
    };
    expect(heldInChannels([paying])).toBe(7_490_000_000n);
  });

  it("counts a channel another node opened at the node's balance there, the fee being the opener's", () => {
    const accepted = { ...opened, initiator: false, local_balance: "20000", remote_balance: "1976530" };
    expect(heldInChannels([accepted])).toBe(20_000_000n);
  });

  it("counts a channel of a commitment type it does not know as any other, rather than refuse the whole balance", () => {
    // A newer LND's enum value the package's proto does not name arrives as its number; TAPROOT is this one's name
    // for what older ones called SIMPLE_TAPROOT_FINAL.
    const unnamed = { ...opened, commitment_type: 9 };
    const taproot = { ...opened, commitment_type: "TAPROOT" };
    expect(heldInChannels([unnamed, taproot])).toBe(4_000_000_000n);
  });

  it("sums the channels exactly, in msat, beyond what a Number holds", () => {
    const large = { ...opened, capacity: "2100000000000000", remote_balance: "1" };
    const accepted = { ...opened, initiator: false, local_balance: "3" };
    expect(heldInChannels([large, accepted, opened])).toBe(2_100_000_002_000_002_000n);
    expect(heldInChannels([])).toBe(0n);
  });

  it("refuses an answer it cannot read rather than report a wrong balance", () => {
    expect(() => heldInChannels([{ ...opened, initiator: false, local_balance: "12.5" }])).toThrow(
      LightningRailError,
    );
    expect(() => heldInChannels([{ ...opened, remote_balance: undefined }])).toThrow(LightningRailError);
    expect(() => heldInChannels([{ ...opened, pending_htlcs: undefined }])).toThrow(LightningRailError);
    expect(() => heldInChannels([{ ...opened, pending_htlcs: [{ amount: "-1" }] }])).toThrow(
      LightningRailError,
    );
  });
});
