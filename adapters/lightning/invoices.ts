// Getting paid: invoices (amount, expiry, memo or description hash) made with one AddInvoice call and
// journalled with the gateway's reference, and the Rail contract's `receive` over them. Their settlement comes
// back through the event pump (events.ts).

import { parseBolt11 } from "../../core/bolt11.ts";
import { type ReceiveOutcome, type ReceiveRequest, SwitchyardError } from "../../core/index.ts";
import { utf8Prefix } from "../../core/text.ts";
import { LightningRailError, lndError } from "./errors.ts";
import { lndErrorText } from "./failures.ts";
import type { LightningRailState } from "./state.ts";
import type { StoredInvoice } from "./store.ts";

export type CreateInvoiceParams = {
  readonly amountMsat: bigint;
  readonly expirySeconds: number;
  /** The gateway's id for what this invoice pays; it comes back on the "received" event. */
  readonly reference: string;
} & (
  | { readonly memo: string; readonly descriptionHash?: never }
  | { readonly descriptionHash: string; readonly memo?: never }
);

export type CreatedInvoice = {
  readonly paymentHash: string;
  readonly request: string;
  readonly amountMsat: bigint;
  readonly expiresAtMs: number;
  readonly reference: string;
};

/**
 * LND's AddInvoice, asked directly. `lightning`'s createInvoice makes a second call (a lookup of the invoice
 * it just made) and recovers the invoice's signing key twice, none of which the rail uses; at 16 invoices in
 * flight that was a third of the time to make one. What LND answers is checked here instead: the request must
 * decode, for the amount asked, with the payment hash LND gave.
 */
const addInvoice = (
  s: LightningRailState,
  invoice: CreateInvoiceParams,
): Promise<{ id: string; request: string }> =>
  new Promise((resolve, reject) => {
    const request = {
      value_msat: invoice.amountMsat.toString(),
      expiry: invoice.expirySeconds,
      ...(invoice.memo !== undefined ? { memo: invoice.memo } : {}),
      ...(invoice.descriptionHash !== undefined
        ? { description_hash: Buffer.from(invoice.descriptionHash, "hex") }
        : {}),
    };
    s.lnd.default.addInvoice(
      request,
      { deadline: Date.now() + s.limits.rpcTimeoutMs },
      (error: unknown, response: { r_hash?: unknown; payment_request?: unknown } | undefined) => {
        if (error) return reject(error);
        const id = Buffer.isBuffer(response?.r_hash) ? response.r_hash.toString("hex") : "";
        const paymentRequest = typeof response?.payment_request === "string" ? response.payment_request : "";
        const parsed = parseBolt11(paymentRequest);
        if (!parsed.ok || id.length !== 64 || parsed.value.paymentHash !== id)
          return reject(
            new LightningRailError("LND answered an invoice that does not decode", {
              details: paymentRequest,
            }),
          );
        if (parsed.value.amountMsat !== invoice.amountMsat)
          return reject(
            new LightningRailError("LND answered an invoice for another amount", {
              details: `${parsed.value.amountMsat} msat`,
            }),
          );
        resolve({ id, request: paymentRequest });
      },
    );
  });

/**
 * An invoice made and journalled; or LND's refusal (or silence) to make it, a torn journal's before LND is asked, or a
 * journal that could not take its line after LND made it (an invoice handed to nobody).
 */
type MadeInvoice =
  | { readonly ok: true; readonly invoice: CreatedInvoice }
  | { readonly ok: false; readonly error: LightningRailError };

export async function createInvoice(
  s: LightningRailState,
  invoiceParams: CreateInvoiceParams,
): Promise<CreatedInvoice> {
  const made = await makeInvoice(s, invoiceParams);
  if (!made.ok) throw made.error;
  return made.invoice;
}

/** Parameters outside the rail's limits throw (the caller's bug); a journal that cannot take the line is a refusal. */
async function makeInvoice(s: LightningRailState, invoiceParams: CreateInvoiceParams): Promise<MadeInvoice> {
  if (!s.running) throw new LightningRailError("the Lightning rail is not started");
  const { limits } = s;
  const { amountMsat, expirySeconds, reference } = invoiceParams;
  if (amountMsat < limits.amountMinMsat || amountMsat > limits.amountMaxMsat)
    throw new LightningRailError("invoice amount out of range", { details: `${amountMsat} msat` });
  if (
    !Number.isSafeInteger(expirySeconds) ||
    expirySeconds < 1 ||
    expirySeconds > limits.invoiceExpirySecondsMax
  )
    throw new LightningRailError("invoice expiry out of range", { details: `${expirySeconds} s` });
  if (reference.length === 0 || reference.length > limits.referenceLengthMax)
    throw new LightningRailError("invoice reference length out of range", {
      details: `${reference.length} characters`,
    });
  if (invoiceParams.memo !== undefined && Buffer.byteLength(invoiceParams.memo) > limits.memoLengthMax)
    throw new LightningRailError("memo too long", {
      details: `${Buffer.byteLength(invoiceParams.memo)} bytes`,
    });
  if (invoiceParams.descriptionHash !== undefined && !/^[0-9a-f]{64}$/.test(invoiceParams.descriptionHash))
    throw new LightningRailError("description hash must be 32 bytes hex", {
      details: invoiceParams.descriptionHash,
    });
  // A torn journal refuses the invoice's line: refused before LND makes an invoice nobody would be told of (a
  // RailStoreError from the append, a 500, before), as when LND is out of reach.
  const tornBy = s.store.torn?.() ?? null;
  if (tornBy !== null)
    return { ok: false, error: lndError("journal torn by a failed write or sync", tornBy) };
  const expiresAtMs = s.now() + expirySeconds * 1000;
  let created: { id: string; request: string };
  try {
    created = await addInvoice(s, invoiceParams);
  } catch (error) {
    return { ok: false, error: lndError("LND did not create the invoice", error) };
  }
  const stored: StoredInvoice = { paymentHash: created.id, reference, expiresAtMs };
  s.invoices.set(created.id, stored);
  try {
    await s.store.append({ t: "invoice", ...stored });
  } catch (error) {
    // Not journalled (a write or sync that failed, the journal taken over by another process): refused as when LND
    // refuses, not thrown (a 500 at the API, before). The invoice LND made is handed to nobody, so nobody can pay it;
    // the rail keeps nothing of it. The refusal, which reaches the API's caller, names what failed, not the journal's
    // path: that is logged.
    s.invoices.delete(created.id);
    s.logger.error(
      { paymentHash: created.id, error: lndErrorText(error) },
      "an invoice's journal line could not be written: the invoice is refused",
    );
    return {
      ok: false,
      error: new LightningRailError("the invoice could not be journalled", {
        details: error instanceof SwitchyardError ? error.shortMessage : "journal write failed",
        cause: error,
      }),
    };
  }
  return {
    ok: true,
    invoice: { paymentHash: created.id, request: created.request, amountMsat, expiresAtMs, reference },
  };
}

/**
 * Money in, as the Rail contract asks: a BOLT11 invoice for the request (its description as the memo), or a
 * refusal that made nothing anyone can pay — an amount outside the rail's range, LND out of reach or refusing, or a
 * journal that could not take the invoice's line (LND then holds an invoice handed to nobody, until it expires).
 */
export async function receive(s: LightningRailState, request: ReceiveRequest): Promise<ReceiveOutcome> {
  const { limits } = s;
  if (request.amount > limits.amountMaxMsat)
    return { status: "refused", code: "amount_too_large", message: `above ${limits.amountMaxMsat} msat` };
  if (request.amount < limits.amountMinMsat)
    return { status: "refused", code: "rejected", message: `below ${limits.amountMinMsat} msat` };
  if (!s.running || !s.health.connected)
    return {
      status: "refused",
      code: "rail_unavailable",
      message: `LND unreachable: ${s.health.lastError ?? ""}`,
    };
  // LND refusing AddInvoice (a macaroon without invoice rights, LND gone since the last health check) made
  // nothing anyone can pay: a refusal, as when the health check already knew.
  const made = await makeInvoice(s, {
    amountMsat: request.amount,
    expirySeconds: request.expirySeconds,
    reference: request.reference,
    // A BOLT11 memo holds memoLengthMax bytes: a longer description is shown cut (the gateway keeps it whole).
    memo: utf8Prefix(request.description, limits.memoLengthMax),
  });
  if (!made.ok) {
    const { shortMessage, details } = made.error;
    return { status: "refused", code: "rail_unavailable", message: `${shortMessage}: ${details ?? ""}` };
  }
  const { invoice } = made;
  return {
    status: "offered",
    railReference: invoice.paymentHash,
    expiresAtMs: invoice.expiresAtMs,
    instructions: { method: "lightning", bolt11: invoice.request, payment_hash: invoice.paymentHash },
  };
}

/**
 * Moves invoicesKnownBeforeMs up to the earliest expiry among the invoices the rail still holds, but those set aside:
 * one leaves the map only once its payment was delivered, or once LND said it was never paid (the pass over
 * long-expired invoices), so every invoice of ours that expired before that is known — however long LND was out of
 * reach, since nothing was asked of it meanwhile. At most now less rpcTimeoutMs: an invoice being made is held once LND
 * answers AddInvoice (within that deadline), and expires at least a second after it was asked for. Never back; only
 * while running (the map is the journal's from the start on). An invoice set aside (paid, its settlement refused by
 * the gateway again and again) is known too: paid, its payment owed to the gateway, so the point moves past it, and it
 * is told apart by invoicesSetAside, which whoever records the point records with it (the gateway's prune keeps each
 * invoice listed, which its settlement needs: gateway/l402/tokens.ts recordInvoicesKnown). Before, it held the point
 * for as long as it stayed set aside, days maybe, and no unpaid challenge since was deleted. It is marked only once
 * its set-aside line is journalled, and stays marked until it leaves the map: a point read with the list is never past
 * one the list leaves out while its settlement is owed.
 */
export function noteInvoicesKnown(s: LightningRailState): void {
  if (!s.running) return;
  let knownBeforeMs = s.now() - s.limits.rpcTimeoutMs;
  for (const invoice of s.invoices.values())
    if (invoice.setAside !== true && invoice.expiresAtMs < knownBeforeMs) knownBeforeMs = invoice.expiresAtMs;
  if (s.invoicesKnownBeforeMs === null || knownBeforeMs > s.invoicesKnownBeforeMs)
    s.invoicesKnownBeforeMs = knownBeforeMs;
}

/** The references of the invoices the rail holds set aside (the point moves past them: noteInvoicesKnown). */
export function invoicesSetAside(s: LightningRailState): string[] {
  const references: string[] = [];
  for (const invoice of s.invoices.values())
    if (invoice.setAside === true) references.push(invoice.reference);
  return references;
}
