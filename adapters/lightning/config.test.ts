import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../core/index.ts";
import { LightningConfigError, loadLightningConfig } from "./config.ts";

describe("loadLightningConfig", () => {
  it("is off without LND_SOCKET", () => {
    expect(loadLightningConfig({})).toMatchObject({ kind: "off" });
  });

  it("reads cert and macaroon from files as base64", async () => {
    const directory = await mkdtemp(path.join(os.tmpdir(), "lightning-config-"));
    try {
      await writeFile(path.join(directory, "tls.cert"), "CERT");
      await writeFile(path.join(directory, "admin.macaroon"), Buffer.from([1, 2, 3]));
      const config = loadLightningConfig({
        LND_SOCKET: "127.0.0.1:10009",
        LND_CERT_PATH: path.join(directory, "tls.cert"),
        LND_MACAROON_PATH: path.join(directory, "admin.macaroon"),
      });
      expect(config).toMatchObject({
        kind: "on",
        lnd: { socket: "127.0.0.1:10009", cert: Buffer.from("CERT").toString("base64"), macaroon: "AQID" },
        journalPath: ".switchyard/lightning-journal.jsonl",
      });
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it("refuses both or neither of path and base64, and a bad socket", () => {
    expect(() => loadLightningConfig({ LND_SOCKET: "127.0.0.1:10009", LND_MACAROON_BASE64: "AQID" })).toThrow(
      LightningConfigError,
    );
    expect(() => loadLightningConfig({ LND_SOCKET: "nope" })).toThrow(/LND_SOCKET/);
    expect(() => loadLightningConfig({ LND_SOCKET: "nope" })).toThrow(SwitchyardError);
  });

  it("reads the fee estimate's deadline and the fee of an unknown route, and refuses a negative one", () => {
    const lnd = { LND_SOCKET: "127.0.0.1:10009", LND_CERT_BASE64: "AA==", LND_MACAROON_BASE64: "AQID" };
    expect(loadLightningConfig(lnd)).toMatchObject({
      limits: { feeEstimateTimeoutMs: 2_000, unknownRouteFeeBaseMsat: 2_000n, unknownRouteFeePpm: 1_000n },
    });
    expect(
      loadLightningConfig({
        ...lnd,
        LIGHTNING_FEE_ESTIMATE_TIMEOUT_MS: "500",
        LIGHTNING_UNKNOWN_ROUTE_FEE_BASE_MSAT: "5000",
        LIGHTNING_UNKNOWN_ROUTE_FEE_PPM: "2500",
      }),
    ).toMatchObject({
      limits: { feeEstimateTimeoutMs: 500, unknownRouteFeeBaseMsat: 5_000n, unknownRouteFeePpm: 2_500n },
    });
    expect(() => loadLightningConfig({ ...lnd, LIGHTNING_UNKNOWN_ROUTE_FEE_PPM: "-1" })).toThrow(
      /LIGHTNING_UNKNOWN_ROUTE_FEE_PPM/,
    );
  });
});
