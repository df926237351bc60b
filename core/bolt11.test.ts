import { describe, expect, it } from "vitest";
import { parseBolt11, splitBolt11 } from "./bolt11.ts";

// The BOLT 11 specification's "$5 for a cup of coffee, within one minute" example.
const coffee =
  "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp";

describe("parseBolt11", () => {
  it("reads payment hash, amount, timestamp and expiry", () => {
    expect(parseBolt11(coffee)).toEqual({
      ok: true,
      value: {
        network: "bc",
        paymentHash: "0001020304050607080900010203040506070809000102030405060708090102",
        amountMsat: 250_000_000n,
        timestampSeconds: 1496314658,
        expirySeconds: 60,
        descriptionHash: null,
      },
    });
  });

  it("reads a description hash (the specification's hashed list of things, $24)", () => {
    const hashed =
      "lnbc20m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqscc6gd6ql3jrc5yzme8v4ntcewwz5cnw92tz0pc8qcuufvq7khhr8wpald05e92xw006sq94mg8v2ndf4sefvf9sygkshp5zfem29trqq2yxxz7";
    const parsed = parseBolt11(hashed);
    expect(parsed.ok && parsed.value.descriptionHash).toBe(
      "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1",
    );
  });

  it("accepts upper case and a lightning: prefix", () => {
    const parsed = parseBolt11(`lightning:${coffee.toUpperCase()}`);
    expect(parsed.ok && parsed.value.amountMsat).toBe(250_000_000n);
  });

  it("refuses mixed case (BIP-173; LND's decoder refuses it too)", () => {
    const mixed = `${coffee.slice(0, 10).toUpperCase()}${coffee.slice(10)}`;
    expect(parseBolt11(mixed)).toEqual({ ok: false, error: "invoice_malformed" });
    expect(parseBolt11(`LIGHTNING:${mixed}`)).toEqual({ ok: false, error: "invoice_malformed" });
  });

  it("refuses a changed character (checksum)", () => {
    const changed = `${coffee.slice(0, 40)}${coffee[40] === "q" ? "p" : "q"}${coffee.slice(41)}`;
    expect(parseBolt11(changed)).toEqual({ ok: false, error: "invoice_checksum" });
  });

  it("refuses what is not an invoice", () => {
    expect(parseBolt11("hello")).toEqual({ ok: false, error: "invoice_malformed" });
    expect(parseBolt11("x".repeat(8000))).toEqual({ ok: false, error: "invoice_malformed" });
  });
});

describe("splitBolt11", () => {
  it("splits an invoice once for its readers, the last 64 kept, text past an invoice's length never", () => {
    const first = splitBolt11(coffee);
    expect(first.ok).toBe(true);
    // The API, the router and the rail each read a payment's invoice: they get the one split.
    expect(splitBolt11(coffee)).toBe(first);
    // 64 other texts later, it is split anew (alike, another object): the kept splits are bounded.
    for (let i = 0; i < 64; i += 1) splitBolt11(`${coffee.slice(0, 40)}${i}`);
    const again = splitBolt11(coffee);
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    const long = "x".repeat(8000);
    expect(splitBolt11(long)).toEqual({ ok: false, error: "invoice_malformed" });
    expect(splitBolt11(long)).not.toBe(splitBolt11(long));
  });
});
