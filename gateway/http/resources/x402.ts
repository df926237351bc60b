// Switchyard as an x402 facilitator: POST /v1/x402/verify, POST /v1/x402/settle, GET /v1/x402/supported — the
// specification's bodies (v2; v1 payloads and requirements taken too), so a resource server built with the official
// packages points its HTTPFacilitatorClient at `<gateway>/v1/x402` and authenticates with the tenant's API key
// (`createAuthHeaders`: Authorization: Bearer sk_…), scope `invoices`.
//
// Which account is credited: the requirements' payTo must be the gateway's hot wallet on that chain (GET /supported
// names it in each kind's `extra.payTo`), so the money lands where the gateway can book it; the tenant names its
// account in the `Switchyard-Account` header (acct_…, an account of its own holding the chain's asset), required on
// /settle and checked on /verify when sent. Each settled payment is an invoice of that account (credited once final,
// the transaction as evidence; refundable like any invoice).
//
// A refusal of the payment is a 200 with `isValid: false` / `success: false` and x402's reason (the reference
// facilitator's habit); a malformed request body or an unknown account is the API's own 4xx.
//
// Neither route reads an Idempotency-Key: a payment is idempotent by its authorization's nonce. Settled again, it
// answers its settlement for the account it credited and refuses it for another; left `submitted`, the retry reads
// the outcome. A key kept the first answer instead, and replayed it to a retry naming another account (told that one
// was credited) and a transient failure for 24 hours.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { AccountCache } from "../../accounts/index.ts";
import { remotePaywallCompleteTimeoutMsDefault } from "../../paywall/remote.ts";
import { outlastingWait } from "../../paywall/socket-wait.ts";
import {
  type CreditTarget,
  facilitatorSettle,
  facilitatorSupported,
  facilitatorVerify,
  settleResponse,
  supportedResponse,
  verifyResponse,
  type X402Deps,
} from "../../x402/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { documentedHeaders, errorView, storable } from "../schemas.ts";

export type X402RoutesOptions = { x402: X402Deps; accounts: AccountCache };

/** The header that names the account credited with what the facilitator settles. */
export const creditAccountHeader = "switchyard-account";

// The payload and requirements are the x402 protocol's own objects, read by the facilitator (an invalid one is its
// answer, not a 400). Their keys are storable, as every body's text is (text-safety.ts): the document says so of the
// names it can; a NUL deeper in a value is refused the same, unsaid (a value is any JSON).
const x402Object = () => z.record(storable(z.string()), z.unknown());
const facilitatorBody = z.strictObject({
  x402Version: z.number().int(),
  paymentPayload: x402Object(),
  paymentRequirements: x402Object(),
});

const accountIdBytesMax = 64;

const missingCreditHeader = () =>
  new ApiError("parameter_missing", `name the account to credit in the ${creditAccountHeader} header`, {
    param: creditAccountHeader,
  });

/** What the credited account's header may be refused with (creditOf). */
const creditRefusals = ["account_not_found", "asset_mismatch"] as const;

/** The credited account's header, as the document gives it: `settle` needs it, `verify` checks it when sent. */
const creditHeader = (required: boolean) =>
  documentedHeaders({
    name: creditAccountHeader,
    required,
    description: required
      ? "The id of the account (acct_…) credited with what is settled"
      : "The id of the account (acct_…) a settle would credit: checked when sent",
    schema: { type: "string", minLength: 1, maxLength: accountIdBytesMax },
  });

/** The account the header names: the tenant's own, holding an asset x402 is paid in; null when none is named. */
async function creditOf(
  options: X402RoutesOptions,
  tenantId: string,
  named: string | readonly string[] | undefined,
): Promise<CreditTarget | null> {
  if (named === undefined) return null;
  if (typeof named !== "string" || named.length === 0 || named.length > accountIdBytesMax)
    throw new ApiError("parameter_invalid", `${creditAccountHeader} must name one account`, {
      param: creditAccountHeader,
    });
  const account = await options.accounts.tenantAccount({ tenantId, id: named });
  if (account === null)
    throw new ApiError("account_not_found", `no account "${named}"`, { param: creditAccountHeader });
  if (!options.x402.chains.chains.some((chain) => chain.asset.code === account.asset.code))
    throw new ApiError(
      "asset_mismatch",
      `account ${account.id} holds ${account.asset.code}; x402 pays USDC`,
      {
        param: creditAccountHeader,
      },
    );
  return { tenantId, accountId: account.id };
}

const plugin: FastifyPluginAsyncZod<X402RoutesOptions> = async (app, options) => {
  app.post(
    "/x402/verify",
    {
      config: { scope: "invoices", errorCodes: creditRefusals, idempotency: "none" },
      schema: {
        body: facilitatorBody,
        response: { 200: verifyResponse, "4xx": errorView },
        ...creditHeader(false),
      },
    },
    async (request) => {
      await creditOf(options, tenantOf(request).id, request.headers[creditAccountHeader]);
      return facilitatorVerify(options.x402, request.body);
    },
  );
  app.post(
    "/x402/settle",
    {
      config: { scope: "invoices", errorCodes: creditRefusals, idempotency: "none" },
      schema: {
        body: facilitatorBody,
        response: { 200: settleResponse, "4xx": errorView },
        ...creditHeader(true),
      },
      // Missing, the header makes the request malformed: refused as a bad body is, before its Idempotency-Key is
      // looked at (a key used before for another request would otherwise be answered 409 first).
      preValidation: (request, _reply, done) => {
        done(request.headers[creditAccountHeader] === undefined ? missingCreditHeader() : undefined);
      },
    },
    async (request) => {
      // Answered once the transaction is mined (up to the settler's wait): the socket outlasts the idle timeout.
      outlastingWait(request.raw, remotePaywallCompleteTimeoutMsDefault);
      const credit = await creditOf(options, tenantOf(request).id, request.headers[creditAccountHeader]);
      if (credit === null) throw missingCreditHeader();
      return facilitatorSettle(options.x402, request.body, credit);
    },
  );
  app.get(
    "/x402/supported",
    { config: { scope: "invoices" }, schema: { response: { 200: supportedResponse, "4xx": errorView } } },
    async () => facilitatorSupported(options.x402),
  );
};

export const x402Routes = fp(plugin, {
  name: "switchyard-x402",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
