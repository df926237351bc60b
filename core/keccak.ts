// Keccak-256 over bytes through the `keccak` package's N-API sponge: about 3 µs for a 224-byte input where
// @noble/hashes (viem's) takes 17 µs on this machine, which counts on the paywall's x402 path (three hashes per
// payment). The package's own hash objects are streams, whose construction alone costs more than the hash, so the
// addon's sponge (KeccakState: initialize, absorb, absorbLastFewBits, squeeze) is loaded from the package's directory
// the way the package loads it, and one sponge serves every call (each call initializes it; nothing here awaits).
// Where the addon cannot load, or lacks that shape, viem's own keccak256. Loaded once, by whoever imports this file.
import { createRequire } from "node:module";
import path from "node:path";
import { keccak256 as viemKeccak256 } from "viem";

type KeccakState = {
  initialize(rate: number, capacity: number): void;
  absorb(data: Buffer): void;
  absorbLastFewBits(bits: number): void;
  squeeze(length: number): Buffer;
};

/** Keccak-256's rate and capacity in bits, and its padding's first bits (Ethereum's Keccak, not SHA3's 0x06). */
const rateBits = 1088;
const capacityBits = 512;
const keccakPadding = 0x01;

const sponge = ((): KeccakState | null => {
  try {
    const manifest = createRequire(import.meta.url).resolve("keccak/package.json");
    const State = createRequire(manifest)("node-gyp-build")(path.dirname(manifest)) as new () => KeccakState;
    const state = new State();
    for (const method of ["initialize", "absorb", "absorbLastFewBits", "squeeze"] as const)
      if (typeof state[method] !== "function") return null;
    return state;
  } catch {
    return null;
  }
})();

/** Keccak-256 of `bytes` (Ethereum's, not SHA3-256). */
export const keccak256Bytes: (bytes: Uint8Array) => Uint8Array =
  sponge === null
    ? (bytes) => viemKeccak256(bytes, "bytes")
    : (bytes) => {
        sponge.initialize(rateBits, capacityBits);
        sponge.absorb(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        sponge.absorbLastFewBits(keccakPadding);
        return sponge.squeeze(32);
      };

/** Whether the addon serves keccak256Bytes. */
export const keccakIsNative = sponge !== null;
