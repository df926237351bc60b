// What a module logs through: the part of pino's interface Switchyard uses. The composition root hands
// each rail, the ledger writer and every periodic job a child of the app's logger (`logger.child({ module })`),
// so every line carries where it came from. Secrets never go into a log line.

export type LogFn = {
  (message: string): void;
  (fields: Record<string, unknown>, message: string): void;
};

export type Logger = {
  readonly error: LogFn;
  readonly warn: LogFn;
  readonly info: LogFn;
  readonly debug: LogFn;
  child(bindings: Record<string, unknown>): Logger;
};

/** A logger that drops everything: for tests and tools that have nothing to say. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child: () => silentLogger,
};
