// The Lightning rail's settings, validated with zod from an environment record the composition root
// passes in (nothing here reads process.env). No LND_SOCKET: the rail is off, and the reason says so.
// `npm run regtest` prints these variables for its gateway node.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { hostPort, SwitchyardError, wholeBigint, wholeNumber } from "../../core/index.ts";
import type { LightningRailLimits, LndConnection } from "./state.ts";

const base64 = z.string().regex(/^[A-Za-z0-9+/=\s]+$/, "base64");

export const lightningEnvSchema = z.object({
  /** host:port of LND's gRPC listener. Unset: the Lightning rail is off. */
  LND_SOCKET: hostPort.optional(),
  /** LND's tls.cert: a path, or the file's bytes in base64. */
  LND_CERT_PATH: z.string().min(1).optional(),
  LND_CERT_BASE64: base64.optional(),
  /** An admin (or invoice + offchain read/write) macaroon: a path, or base64. */
  LND_MACAROON_PATH: z.string().min(1).optional(),
  LND_MACAROON_BASE64: base64.optional(),
  /** The rail's journal (attempt ↔ payment hash, invoice references, settle index); survives restarts. */
  LIGHTNING_JOURNAL_PATH: z.string().min(1).default(".switchyard/lightning-journal.jsonl"),
  LIGHTNING_EXECUTE_WAIT_MS: wholeNumber(0, 600_000).default(15_000),
  LIGHTNING_PAYMENT_TIMEOUT_MS: wholeNumber(1_000, 600_000).default(60_000),
  /** How long a payment waits for LND's route fee to its destination before routing on the snapshot's model. */
  LIGHTNING_FEE_ESTIMATE_TIMEOUT_MS: wholeNumber(1, 60_000).default(2_000),
  /** The routing fee assumed for a destination not asked about yet: base (msat) + parts per million. */
  LIGHTNING_UNKNOWN_ROUTE_FEE_BASE_MSAT: wholeBigint(0n, 100_000_000n).default(2_000n),
  LIGHTNING_UNKNOWN_ROUTE_FEE_PPM: wholeBigint(0n, 1_000_000n).default(1_000n),
  /** Hosts whose Lightning Addresses' LNURL-pay servers may be asked over plain http (comma-separated); others: https. */
  LIGHTNING_ADDRESS_HTTP_HOSTS: z.string().default(""),
});

export type LightningConfig =
  | { kind: "off"; reason: string }
  | {
      kind: "on";
      lnd: LndConnection;
      journalPath: string;
      limits: Partial<LightningRailLimits>;
    };

export class LightningConfigError extends SwitchyardError {
  override name = "LightningConfigError";
}

export function loadLightningConfig(env: Record<string, string | undefined>): LightningConfig {
  const parsed = lightningEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join(".")}: ${issue.message}`)
      .join("; ");
    throw new LightningConfigError(`invalid lightning configuration: ${problems}`);
  }
  const e = parsed.data;
  if (e.LND_SOCKET === undefined)
    return { kind: "off", reason: "no LND_SOCKET configured: the Lightning rail is off" };
  const read = (name: string, file: string | undefined, inline: string | undefined): string => {
    if ((file === undefined) === (inline === undefined))
      throw new LightningConfigError(
        `invalid lightning configuration: set exactly one of ${name}_PATH, ${name}_BASE64`,
      );
    if (inline !== undefined) return inline.replace(/\s/g, "");
    try {
      return readFileSync(file as string).toString("base64");
    } catch (error) {
      throw new LightningConfigError(`invalid lightning configuration: cannot read ${name}_PATH ${file}`, {
        cause: error,
      });
    }
  };
  return {
    kind: "on",
    lnd: {
      socket: e.LND_SOCKET,
      cert: read("LND_CERT", e.LND_CERT_PATH, e.LND_CERT_BASE64),
      macaroon: read("LND_MACAROON", e.LND_MACAROON_PATH, e.LND_MACAROON_BASE64),
    },
    journalPath: e.LIGHTNING_JOURNAL_PATH,
    limits: {
      executeWaitMs: e.LIGHTNING_EXECUTE_WAIT_MS,
      paymentTimeoutMs: e.LIGHTNING_PAYMENT_TIMEOUT_MS,
      feeEstimateTimeoutMs: e.LIGHTNING_FEE_ESTIMATE_TIMEOUT_MS,
      unknownRouteFeeBaseMsat: e.LIGHTNING_UNKNOWN_ROUTE_FEE_BASE_MSAT,
      unknownRouteFeePpm: e.LIGHTNING_UNKNOWN_ROUTE_FEE_PPM,
      lnurlHttpHosts: e.LIGHTNING_ADDRESS_HTTP_HOSTS.split(",")
        .map((host) => host.trim().toLowerCase())
        .filter((host) => host !== ""),
    },
  };
}
