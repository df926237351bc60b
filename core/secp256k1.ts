// libsecp256k1, as the `secp256k1` package binds it (its N-API build; its own JavaScript fallback when the addon
// cannot load), typed with what Switchyard uses: x402's signer recovery and Lightning's invoice payee. Loaded once,
// here, by whoever imports this file (core/index.ts does not, so nothing else pays for the addon).
import { createRequire } from "node:module";

export type Secp256k1 = {
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: boolean): Uint8Array;
  /** Only a low-S signature verifies. */
  ecdsaVerify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  ecdsaSign(message: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number };
  publicKeyVerify(publicKey: Uint8Array): boolean;
  publicKeyCreate(privateKey: Uint8Array, compressed: boolean): Uint8Array;
};

export const secp256k1 = createRequire(import.meta.url)("secp256k1") as Secp256k1;
