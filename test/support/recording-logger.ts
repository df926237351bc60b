// A Logger for tests that keeps every line it is told (level, message, fields), so a test can assert what a
// module logged through the logger it was given. Children log into the same lines.
import type { Logger } from "../../core/index.ts";

export type LogLine = {
  readonly level: "error" | "warn" | "info" | "debug";
  readonly message: string;
  readonly fields: Record<string, unknown>;
};

export function recordingLogger(options: { lines?: LogLine[]; onLine?: (line: LogLine) => void } = {}): {
  logger: Logger;
  lines: LogLine[];
} {
  const lines = options.lines ?? [];
  const at =
    (level: LogLine["level"]) =>
    (first: string | Record<string, unknown>, second?: string): void => {
      const line =
        typeof first === "string"
          ? { level, message: first, fields: {} }
          : { level, message: second ?? "", fields: first };
      lines.push(line);
      options.onLine?.(line);
    };
  const logger: Logger = {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    child: () => logger,
  };
  return { logger, lines };
}
