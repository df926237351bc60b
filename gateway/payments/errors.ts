// What the payments service throws: only broken invariants (a bug or broken data). Expected failures are values.
import { SwitchyardError } from "../../core/index.ts";

/** A payment, attempt or reservation is not as the service wrote it (a bug or broken data), never an expected failure. */
export class PaymentInvariantError extends SwitchyardError {
  override name = "PaymentInvariantError";
}
