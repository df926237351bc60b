import { type DestinationStream, pino } from "pino";
import type { Logger } from "../../core/index.ts";
import type { Config } from "./config.ts";

/**
 * The app's logger: every line passed through `scrub` (the configuration's secrets, secrets.ts configScrubber: an RPC
 * provider's key in a logged error; built once by the app, which gives the HTTP server's log the same), written to
 * `destination` (stdout when none). An error is logged under `err` or `error`, both serialized as
 * pino serializes `err` (type, message, stack, cause): the gateway's code names it either way, and pino's own default
 * serializes `err` alone, so one under `error` was written as `{}`, its message and stack lost (a listener of
 * invoice.paid that threw, a reconciliation pass that failed, a broadcast refused). A value under `error` that is no
 * error (a string) is written as it is.
 */
export function createAppLogger(
  config: Pick<Config, "logLevel">,
  scrub: (line: string) => string,
  destination?: DestinationStream,
): Logger {
  const options = {
    level: config.logLevel,
    hooks: { streamWrite: scrub },
    serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
