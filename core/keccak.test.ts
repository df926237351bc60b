// core/keccak.ts against viem's keccak256 (@noble/hashes): the same digest for every length around the sponge's
// 136-byte rate and for views into a larger buffer, and the addon loaded where the package ships a build for this
// platform (linux-x64 among them; elsewhere, without a compiler at install, it falls back to viem's).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { keccak256 } from "viem";
import { describe, expect, it } from "vitest";
import { keccak256Bytes, keccakIsNative } from "./keccak.ts";

const prebuilt = existsSync(
  path.join(
    path.dirname(createRequire(import.meta.url).resolve("keccak/package.json")),
    "prebuilds",
    `${process.platform}-${process.arch}`,
  ),
);

describe("keccak256Bytes", () => {
  it.runIf(prebuilt)("is served by the addon", () => {
    expect(keccakIsNative).toBe(true);
  });

  it("hashes as viem does, at every length up to three blocks and inside a larger buffer", () => {
    const source = crypto.getRandomValues(new Uint8Array(512));
    for (let length = 0; length <= 3 * 136 + 1; length += 1) {
      const bytes = source.subarray(7, 7 + length);
      expect(Buffer.from(keccak256Bytes(bytes)).toString("hex"), `length ${length}`).toBe(
        keccak256(bytes).slice(2),
      );
    }
    // The empty input's digest, as Ethereum knows it.
    expect(Buffer.from(keccak256Bytes(new Uint8Array(0))).toString("hex")).toBe(
      "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    );
  });
});
