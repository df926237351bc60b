// A Lightning Address's LNURL-pay server for the Lightning tests on the regtest network, its invoices the payee's.
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type AuthenticatedLnd, createHodlInvoice, createInvoice } from "lightning";
import type { LightningRailParams } from "../../adapters/lightning/index.ts";

const sha256 = (hex: string) => createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");

/**
 * A Lightning Address's LNURL-pay server (LUD-06/16) at 127.0.0.1: `name@host` answers each callback with a new invoice
 * of `payee`'s (its hash added to `asked`); any other name is refused ("not found"). `held`: hold invoices, their
 * secrets by hash in `secrets` (the payee holds a payment until it settles or cancels it).
 */
export async function lnurlServer(payee: AuthenticatedLnd, name: string, { held = false } = {}) {
  const metadata = JSON.stringify([["text/plain", `pay ${name}`]]);
  const descriptionHash = createHash("sha256").update(metadata).digest("hex");
  const asked: string[] = [];
  const secrets = new Map<string, string>();
  const server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? "/", "http://localhost");
      let body: unknown = { status: "ERROR", reason: "not found" };
      if (url.pathname === `/.well-known/lnurlp/${name}`)
        body = {
          tag: "payRequest",
          callback: `http://${host}/callback/${name}`,
          minSendable: 1_000,
          maxSendable: 100_000_000,
          metadata,
        };
      else if (url.pathname === `/callback/${name}`) {
        const mtokens = url.searchParams.get("amount") ?? "0";
        const secret = randomBytes(32).toString("hex");
        const invoice = held
          ? await createHodlInvoice({
              lnd: payee,
              id: sha256(secret),
              mtokens,
              description_hash: descriptionHash,
            })
          : await createInvoice({ lnd: payee, mtokens, description_hash: descriptionHash });
        if (held) secrets.set(invoice.id, secret);
        asked.push(invoice.id);
        body = { pr: invoice.request, routes: [] };
      }
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify(body));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const lnurlFetch: LightningRailParams["lnurlFetch"] = (url, init) =>
    fetch(url, { ...init, redirect: "manual" });
  return {
    host,
    address: `${name}@${host}`,
    descriptionHash,
    asked,
    secrets,
    lnurlFetch,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
