// The one base of every error Switchyard throws, on viem's model: a fixed name, a one-line short message,
// optional details (plain text, never a secret) and the original cause. Thrown errors are bugs, broken
// configuration or an unreachable dependency; an expected business failure is a value from a closed set,
// never one of these.

export type SwitchyardErrorOptions = {
  /** More about what happened, for logs; one or a few lines. */
  readonly details?: string;
  /** The error this one translates (a gRPC, JSON-RPC, SQL or Stripe error), kept as it was. */
  readonly cause?: unknown;
};

export class SwitchyardError extends Error {
  override name = "SwitchyardError";
  /** The first line of `message`: what went wrong, without the details. */
  readonly shortMessage: string;
  readonly details: string | undefined;

  constructor(shortMessage: string, options: SwitchyardErrorOptions = {}) {
    const details = options.details ?? detailsOf(options.cause);
    super(details === undefined ? shortMessage : `${shortMessage}\n\nDetails: ${details}`, {
      cause: options.cause,
    });
    this.shortMessage = shortMessage;
    this.details = details;
  }

  /** The first error along the cause chain (this one included) that `predicate` accepts. */
  walk(predicate: (error: unknown) => boolean): unknown {
    return causeWhere(this, predicate);
  }
}

const causeDepthMax = 16;

/**
 * The first error along `error`'s cause chain (`error` included) that `predicate` accepts, whatever kind of error
 * it starts from (a driver's as well as a SwitchyardError); at most causeDepthMax deep.
 */
export function causeWhere(error: unknown, predicate: (error: unknown) => boolean): unknown {
  let current: unknown = error;
  for (let depth = 0; depth < causeDepthMax && current !== undefined; depth += 1) {
    if (predicate(current)) return current;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/**
 * Whether `error`, or an error it wraps, is the database's unique violation (23505) of `constraint` (named by the
 * error, or in its message: a driver that does not set the field).
 */
export function isUniqueViolation(error: unknown, constraint: string): boolean {
  const violation = causeWhere(error, (cause) => {
    const {
      code,
      constraint: named,
      message,
    } = (cause ?? {}) as {
      code?: unknown;
      constraint?: unknown;
      message?: unknown;
    };
    return (
      code === "23505" &&
      (named === constraint || (typeof message === "string" && message.includes(constraint)))
    );
  });
  return violation !== undefined;
}

function detailsOf(cause: unknown): string | undefined {
  if (cause instanceof SwitchyardError) return cause.details ?? cause.shortMessage;
  if (cause instanceof Error) return cause.message.split("\n")[0];
  return undefined;
}
