// The paywall of a Switchyard elsewhere, as the same PaywallCheck: the verdict asked over HTTP
// (POST /v1/paywall_verdicts, with a key that has the invoices scope), a paid one completed with
// POST /v1/paywall_verdicts/:id/complete. The verdict is bounded by requestTimeoutMs; the completion by
// completeTimeoutMs, longer than a settlement may take (a batch's wait and a minute for its transaction to be mined):
// given up sooner, the tenant's app would answer an error while Switchyard goes on and the payer pays.
import { SwitchyardError } from "../../core/index.ts";
import type { PaywallCheck, PaywallCompletion, PaywallVerdict } from "./core.ts";
import type { HeaderLine } from "./scheme.ts";

export const remotePaywallTimeoutMsDefault = 10_000;
export const remotePaywallCompleteTimeoutMsDefault = 90_000;

export class RemotePaywallError extends SwitchyardError {
  override name = "RemotePaywallError";
}

export type RemotePaywallOptions = {
  /** Switchyard's base URL, e.g. http://127.0.0.1:3000 */
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly fetch?: typeof fetch;
  readonly requestTimeoutMs?: number;
  readonly completeTimeoutMs?: number;
};

type VerdictBody =
  | { verdict: "free" }
  | {
      verdict: "preflight" | "challenge";
      status: number;
      headers: HeaderLine[];
      body?: Record<string, unknown>;
    }
  | { verdict: "paid"; id: string; paywall: string; scheme: string; payer: string };

type CompletionBody =
  | { result: "settled"; headers: HeaderLine[] }
  | { result: "refused"; status: 402; headers: HeaderLine[]; body: Record<string, unknown> };

export function remotePaywall(options: RemotePaywallOptions): PaywallCheck {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.requestTimeoutMs ?? remotePaywallTimeoutMsDefault;
  const completeTimeoutMs = options.completeTimeoutMs ?? remotePaywallCompleteTimeoutMsDefault;
  const base = options.baseUrl.replace(/\/+$/, "");

  async function post<T>(
    path: string,
    body: unknown,
    waitMs = timeoutMs,
  ): Promise<{ status: number; body: T }> {
    const response = await doFetch(`${base}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${options.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(waitMs),
    });
    return { status: response.status, body: (await response.json()) as T };
  }

  return async (request) => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(request.headers))
      if (value !== undefined) headers[name] = typeof value === "string" ? value : [...value];
    const answer = await post<VerdictBody>("/v1/paywall_verdicts", {
      method: request.method,
      url: request.url,
      headers,
      ...(request.rawHeaders === undefined ? {} : { raw_headers: [...request.rawHeaders] }),
    });
    if (answer.status !== 200)
      throw new RemotePaywallError(`Switchyard answered ${answer.status} to a paywall verdict`);
    const verdict = answer.body;
    switch (verdict.verdict) {
      case "free":
        return { kind: "free" };
      case "preflight":
        return { kind: "preflight", status: 204, headers: verdict.headers };
      case "challenge":
        return {
          kind: "challenge",
          status: verdict.status === 503 || verdict.status === 400 ? verdict.status : 402,
          headers: verdict.headers,
          body: verdict.body ?? {},
        };
      case "paid": {
        let result: Promise<PaywallCompletion> | null = null;
        const complete = async (outcome: { served: boolean }): Promise<PaywallCompletion> => {
          const done = await post<CompletionBody>(
            `/v1/paywall_verdicts/${verdict.id}/complete`,
            outcome,
            completeTimeoutMs,
          );
          if (done.status === 200 && done.body.result === "settled")
            return {
              kind: "settled",
              headers: done.body.headers,
              // Completed again as not served: Switchyard then serves the same payment sent again, once. Switchyard
              // out of reach: false (never a rejection: the tenant's app has nothing to do about it).
              undelivered: () =>
                post(`/v1/paywall_verdicts/${verdict.id}/complete`, { served: false }).then(
                  (answer) => answer.status === 200,
                  () => false,
                ),
            };
          if (done.status === 200 && done.body.result === "refused")
            return { kind: "refused", status: 402, headers: done.body.headers, body: done.body.body };
          return {
            kind: "refused",
            status: 402,
            headers: [],
            body: { error: "paywall_verdict_lost", message: "the payment could not be completed" },
          };
        };
        const paid: PaywallVerdict = {
          kind: "paid",
          paywallId: verdict.paywall,
          scheme: verdict.scheme,
          payer: verdict.payer,
          complete(outcome) {
            result ??= complete(outcome);
            return result;
          },
        };
        return paid;
      }
    }
  };
}
