import { describe, expect, it } from "vitest";
import { parseBolt11 } from "../../core/bolt11.ts";
import {
  bolt11Field,
  bytesToWords,
  featureWords,
  hopHintWords,
  intToWords,
  publicKeyOf,
  signBolt11,
} from "../../test/support/bolt11.ts";
import { invoiceNetworkOf, readBolt11Payee } from "./bolt11.ts";

// The BOLT 11 specification's "$5 for a cup of coffee, within one minute" example.
const coffee =
  "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp";

// The specification's examples (BOLT 11, "Examples"): signed by the key of node 03e7156a…
const specPayee = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad";
const withRoutingInfo =
  "lnbc20m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqsfpp3qjmp7lwpagxun9pygexvgpjdc4jdj85fr9yq20q82gphp2nflc7jtzrcazrra7wwgzxqc8u7754cdlpfrmccae92qgzqvzq2ps8pqqqqqqpqqqqq9qqqvpeuqafqxu92d8lr6fvg0r5gv0heeeqgcrqlnm6jhphu9y00rrhy4grqszsvpcgpy9qqqqqqgqqqqq7qqzqj9n4evl6mr5aj9f58zp6fyjzup6ywn3x6sk8akg5v4tgn2q8g4fhx05wf6juaxu9760yp46454gpg5mtzgerlzezqcqvjnhjh8z3g2qqdhhwkj";
// The same payment hash and description with a stated payee key (n) and a high-S signature: refused.
const statedKeyHighS =
  "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq2vdhkven9v5sp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygsnp4qvdcf32k0vfxgsyet5ldt246q4jaw8scx3sysx0lnstlt6w4m5rc738hxj8g6cccxpyv7v9azt5ephff75xmpd5az8zwgdl28zjevj9l07stkxrymwcyecs06fh3tvd7nkjdcttxc4jfly0ehlu5xpejmdjqq27lun0";
// …and with a signature that is not the stated key's.
const statedKeyOtherSigner =
  "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq2vdhkven9v5sp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygsnp4qvdcf32k0vfxgsyet5ldt246q4jaw8scx3sysx0lnstlt6w4m5rc7h7364g7pfuhh9etce8y399rcr0ap87drcl7l6af6syrjsalrthw5qxdugelrlcswc355cla0pnmctlgnf5jgagg9fs0xyq4jg5kverqp6ryc0z";
// An LND regtest invoice: final CLTV delta 99, feature bit 9 (tlv_onion).
const regtestTlvOnion =
  "lnbcrt1500n1pwldwwepp5wsnt5psyc0uxstrsz66yvulct3dank305mqsszqseaf6uvsvnp3sdpa2fjkzep6yprkcmmzv9kzqsmj09c8gmmrw4e8yetwvdujq5n9va6kcct5d9hkucqzrr9qzsqsp55jams2za3a9hgztc39tz6xsrpxrerfgrkdeqsdt93hazwlr9k78q03hl88h8fsu0pyz2ex4fsz62ycm48s55gqc9kjxahlnp6jj0rjq5ssyp2xr4qmsyec3szqphngxmkm65j8ttga2ulg3xzwmq5ry5xvqpet0rgz";

const key = (byte: number) => Buffer.alloc(32, byte);
const hash = (byte: number) => [bolt11Field.paymentHash, bytesToWords(Buffer.alloc(32, byte))] as const;
const statedKey = (signer: Buffer) =>
  [bolt11Field.payeeKey, bytesToWords(Buffer.from(publicKeyOf(signer), "hex"))] as const;
const description = [bolt11Field.description, [1, 2, 3]] as const;

// (parseBolt11 is core/bolt11.ts; its amounts are checked here, where invoices can be signed.)
describe("parseBolt11's amount", () => {
  const signed = (network: string, amount: string) =>
    signBolt11({
      network,
      amount,
      timestampSeconds: 1_700_000_000,
      fields: [[bolt11Field.paymentHash, bytesToWords(Buffer.alloc(32, 2))]],
      privateKey: Buffer.alloc(32, 5),
    });
  const amountOf = (network: string, amount: string) => {
    const parsed = parseBolt11(signed(network, amount));
    return parsed.ok ? parsed.value.amountMsat : parsed.error;
  };

  it("reads every multiplier in millisatoshi, on every network", () => {
    expect(amountOf("bc", "20m")).toBe(2_000_000_000n); // 20 milli-BTC
    expect(amountOf("bc", "2500u")).toBe(250_000_000n); // 2,500 micro-BTC
    expect(amountOf("tb", "20n")).toBe(2_000n); // nano-BTC: 100 msat each
    expect(amountOf("bcrt", "2500n")).toBe(250_000n);
    expect(amountOf("bc", "9678785340p")).toBe(967_878_534n); // pico-BTC: a tenth of a msat each
    expect(amountOf("tbs", "2")).toBe(200_000_000_000n); // whole BTC, no multiplier
    expect(amountOf("bcrt", "")).toBeNull(); // the payer chooses
  });

  it("refuses an amount that is not whole millisatoshi, an unknown multiplier or network", () => {
    expect(amountOf("bc", "2501p")).toBe("invoice_malformed");
    expect(amountOf("bc", "10x")).toBe("invoice_malformed");
    expect(amountOf("xx", "10n")).toBe("invoice_malformed");
  });
});

describe("readBolt11Payee", () => {
  it("recovers the payee from the signature and reads the specification's route hints", () => {
    expect(readBolt11Payee(withRoutingInfo)).toEqual({
      ok: true,
      value: {
        network: "bc",
        nodeId: specPayee,
        finalCltvDelta: 18,
        routeHints: [
          [
            {
              nodeId: "029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
              shortChannelId: 0x0102030405060708n,
              feeBaseMsat: 1n,
              feeProportionalMillionths: 20,
              cltvExpiryDelta: 3,
            },
            {
              nodeId: "039e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
              shortChannelId: 0x030405060708090an,
              feeBaseMsat: 2n,
              feeProportionalMillionths: 30,
              cltvExpiryDelta: 4,
            },
          ],
        ],
        featureBits: [],
      },
    });
    const coffeePayee = readBolt11Payee(coffee);
    expect(coffeePayee.ok && coffeePayee.value.nodeId).toBe(specPayee);
  });

  it("reads the final CLTV delta and the feature bits", () => {
    const read = readBolt11Payee(regtestTlvOnion);
    expect(read.ok && read.value).toMatchObject({
      network: "bcrt",
      nodeId: "02ff85a8569c0e0a959af504398c4730def961c3b7104b9b27f3bcf527ff5da0e9",
      finalCltvDelta: 99,
      featureBits: [9],
    });
  });

  it("checks a stated payee key instead of recovering one: its signature, low S only", () => {
    const signer = key(7);
    const stated = signBolt11({
      network: "bcrt",
      amount: "10u",
      timestampSeconds: 1_700_000_000,
      fields: [hash(3), description, statedKey(signer)],
      privateKey: signer,
    });
    const read = readBolt11Payee(stated);
    expect(read.ok && read.value.nodeId).toBe(publicKeyOf(signer));
    const forged = signBolt11({
      network: "bcrt",
      amount: "10u",
      timestampSeconds: 1_700_000_000,
      fields: [hash(3), description, statedKey(signer)],
      privateKey: key(8),
    });
    expect(readBolt11Payee(forged)).toEqual({ ok: false, error: "invoice_signature" });
    expect(readBolt11Payee(statedKeyOtherSigner)).toEqual({ ok: false, error: "invoice_signature" });
    expect(readBolt11Payee(statedKeyHighS)).toEqual({ ok: false, error: "invoice_signature" });
  });

  // BOLT 11 (lightning/bolts#1284, its test vector #1298): a stated key's signature must be low S, and recovery
  // (no `n` field) accepts either S. Both signatures below are the same key's over the same data; only s differs.
  it("refuses a high-S signature against a stated key, and recovers the signer from one without it", () => {
    const signer = key(9);
    const invoice = (fields: readonly (readonly [number, readonly number[]])[], highS: boolean) =>
      signBolt11({
        network: "bcrt",
        amount: "10u",
        timestampSeconds: 1_700_000_000,
        fields,
        privateKey: signer,
        highS,
      });
    const stated = [hash(4), description, statedKey(signer)] as const;
    const lowRead = readBolt11Payee(invoice(stated, false));
    expect(lowRead.ok && lowRead.value.nodeId).toBe(publicKeyOf(signer));
    expect(readBolt11Payee(invoice(stated, true))).toEqual({ ok: false, error: "invoice_signature" });
    const recovered = readBolt11Payee(invoice([hash(4), description], true));
    expect(recovered.ok && recovered.value.nodeId).toBe(publicKeyOf(signer));
  });

  it("recovers whoever signed: another key, another payee", () => {
    const invoice = (signer: Buffer) =>
      signBolt11({
        network: "bcrt",
        amount: "",
        timestampSeconds: 1_700_000_000,
        fields: [hash(1), description],
        privateKey: signer,
      });
    for (const byte of [1, 2, 200]) {
      const read = readBolt11Payee(invoice(key(byte)));
      expect(read.ok && read.value.nodeId).toBe(publicKeyOf(key(byte)));
    }
  });

  it("takes each field's first occurrence, every route hint, and the features' bit numbers", () => {
    const hop = (byte: number, fee: number) => ({
      nodeId: publicKeyOf(key(byte)),
      shortChannelId: (500n << 40n) | (7n << 16n) | 1n,
      feeBaseMsat: fee,
      feeProportionalMillionths: 250,
      cltvExpiryDelta: 40,
    });
    const invoice = signBolt11({
      network: "bcrt",
      amount: "1m",
      timestampSeconds: 1_700_000_000,
      fields: [
        hash(4),
        hash(5),
        description,
        [bolt11Field.finalCltv, intToWords(144)],
        [bolt11Field.finalCltv, intToWords(9)],
        [bolt11Field.routeHint, hopHintWords([hop(11, 1000), hop(12, 2000)])],
        [bolt11Field.routeHint, hopHintWords([hop(13, 3000)])],
        [bolt11Field.features, featureWords([8, 14, 17, 99])],
      ],
      privateKey: key(9),
    });
    const summary = parseBolt11(invoice);
    expect(summary.ok && summary.value.paymentHash).toBe(Buffer.alloc(32, 4).toString("hex"));
    const read = readBolt11Payee(invoice);
    if (!read.ok) throw new Error(read.error);
    expect(read.value.finalCltvDelta).toBe(144);
    expect(read.value.featureBits).toEqual([8, 14, 17, 99]);
    expect(read.value.routeHints.map((hops) => hops.map((h) => h.feeBaseMsat))).toEqual([
      [1000n, 2000n],
      [3000n],
    ]);
    expect(read.value.routeHints[0]?.[0]).toEqual({
      nodeId: publicKeyOf(key(11)),
      shortChannelId: (500n << 40n) | (7n << 16n) | 1n,
      feeBaseMsat: 1000n,
      feeProportionalMillionths: 250,
      cltvExpiryDelta: 40,
    });
  });

  it("recovers the signer whatever the data's length in bits (every padding of the last byte)", () => {
    // 8 consecutive description lengths give the signed data every remainder of words modulo 8.
    for (let length = 0; length < 16; length += 1) {
      const invoice = signBolt11({
        network: "bcrt",
        amount: "",
        timestampSeconds: 1_700_000_000,
        fields: [hash(1), [bolt11Field.description, Array(length).fill(31)]],
        privateKey: key(3),
      });
      const read = readBolt11Payee(invoice);
      expect(read.ok && read.value.nodeId, `description of ${length} words`).toBe(publicKeyOf(key(3)));
    }
  });

  it("refuses an integer field longer than LND reads, a final CLTV delta above 16 bits, a hint to no point", () => {
    const invoice = (fields: Parameters<typeof signBolt11>[0]["fields"]) =>
      signBolt11({
        network: "bcrt",
        amount: "",
        timestampSeconds: 1_700_000_000,
        fields: [hash(1), description, ...fields],
        privateKey: key(1),
      });
    const malformed = { ok: false, error: "invoice_malformed" };
    expect(readBolt11Payee(invoice([[bolt11Field.finalCltv, Array(14).fill(1)]]))).toEqual(malformed);
    expect(parseBolt11(invoice([[bolt11Field.expiry, Array(14).fill(1)]]))).toEqual(malformed);
    expect(readBolt11Payee(invoice([[bolt11Field.finalCltv, intToWords(65_536)]]))).toEqual(malformed);
    const ok = readBolt11Payee(invoice([[bolt11Field.finalCltv, intToWords(65_535)]]));
    expect(ok.ok && ok.value.finalCltvDelta).toBe(65_535);
    const nowhere = {
      nodeId: "ff".repeat(33),
      shortChannelId: 1n,
      feeBaseMsat: 0,
      feeProportionalMillionths: 0,
      cltvExpiryDelta: 40,
    };
    expect(readBolt11Payee(invoice([[bolt11Field.routeHint, hopHintWords([nowhere])]]))).toEqual(malformed);
  });

  it("refuses a route hint that is not whole hops, and what is no invoice", () => {
    const invoice = signBolt11({
      network: "bcrt",
      amount: "",
      timestampSeconds: 1_700_000_000,
      fields: [hash(1), description, [bolt11Field.routeHint, Array(80).fill(1)]],
      privateKey: key(1),
    });
    expect(readBolt11Payee(invoice)).toEqual({ ok: false, error: "invoice_malformed" });
    expect(readBolt11Payee("lnbc1qqqq")).toEqual({ ok: false, error: "invoice_malformed" });
  });
});

describe("invoiceNetworkOf", () => {
  it("names the BOLT11 network of a chain as `lightning` reports it (genesis hash, bytes reversed), and no network for others", () => {
    expect(invoiceNetworkOf(["06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"])).toBe(
      "bcrt",
    );
    expect(invoiceNetworkOf(["6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000"])).toBe("bc");
    expect(invoiceNetworkOf(["f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000"])).toBe(
      "tbs",
    );
    expect(invoiceNetworkOf(["e2bf047e7e5a191aa4ef34d314979dc9986e0f19251edaba5940fd1fe365a712"])).toBeNull();
    expect(invoiceNetworkOf([])).toBeNull();
  });
});
