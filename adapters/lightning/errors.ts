// The Lightning rail's thrown errors, and the one place where what the `lightning` package rejects with (gRPC's
// [code, message, {err}] arrays, or an Error) becomes one of them. An expected payment failure is not thrown:
// it is a Failure value from core's closed set (failures.ts).
import { SwitchyardError } from "../../core/index.ts";
import { lndErrorText } from "./failures.ts";

/** A bug, a misconfiguration, or LND out of reach or answering nonsense. */
export class LightningRailError extends SwitchyardError {
  override name = "LightningRailError";
}

/** What a `lightning` call rejected with, as the rail's error: LND's text in the details, the original as the cause. */
export function lndError(shortMessage: string, error: unknown): LightningRailError {
  return new LightningRailError(shortMessage, { details: lndErrorText(error), cause: error });
}
