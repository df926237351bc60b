// Whole numbers written as text (a query parameter, an environment variable), in decimal digits and nothing else.
// zod's coercion takes whatever Number() or BigInt() takes: "" as 0, " 7 " as 7, "0x10" as 16, "1e3" as 1000 (Number),
// so that `?created[lt]=` listed what was created before 1970 and `PORT=` listened on any free port. Here those are
// refused. A number that is already a number (a JSON value) is taken as it is. In the OpenAPI document the schema is
// the integer it parses to, with its bounds.
import { z } from "zod";

/** Up to 15 digits: every such number is exact as a JavaScript number. */
const digits = /^[0-9]{1,15}$/;

/** One message for whatever is wrong (not a number, not whole, out of bounds): what is wanted. */
const wanted = (min: number | bigint, max: number | bigint, unbounded: boolean) =>
  `a whole number ${unbounded ? `of at least ${min}` : `from ${min} to ${max}`}, in decimal digits`;

/** A whole number from `min` to `max`, written in decimal digits. */
export function wholeNumber(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const error = wanted(min, max, max === Number.MAX_SAFE_INTEGER);
  return z.preprocess(
    (value) => (typeof value === "string" && digits.test(value) ? Number(value) : value),
    z.number({ error }).int({ error }).min(min, { error }).max(max, { error }),
  );
}

/** A whole number from `min` to `max` as a bigint, written in decimal digits (up to 30), or a JSON integer. */
export function wholeBigint(min: bigint, max: bigint) {
  const error = wanted(min, max, false);
  return z.preprocess(
    (value) =>
      typeof value === "string" && /^[0-9]{1,30}$/.test(value)
        ? BigInt(value)
        : Number.isSafeInteger(value)
          ? BigInt(value as number)
          : value,
    z.bigint({ error }).min(min, { error }).max(max, { error }),
  );
}
