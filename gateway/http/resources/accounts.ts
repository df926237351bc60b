// GET /v1/accounts/:id/balance: the tenant's account as the ledger holds it.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { formatAmount, SwitchyardError } from "../../../core/index.ts";
import { type AccountCache, balanceOf } from "../../accounts/index.ts";
import type { Ledger } from "../../ledger/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import { balanceView, errorView, idParams } from "../schemas.ts";

export type AccountRoutesOptions = { accounts: AccountCache; ledger: Ledger };

const plugin: FastifyPluginAsyncZod<AccountRoutesOptions> = async (app, options) => {
  app.get(
    "/accounts/:id/balance",
    { schema: { params: idParams("acct"), response: { 200: balanceView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const account = await options.accounts.tenantAccount({ tenantId: tenantOf(request).id, id });
      if (account === null) throw new ApiError("account_not_found", `no account "${id}"`);
      const [ledgerAccount] = await options.ledger.lookupAccounts([account.ledgerAccountId]);
      if (ledgerAccount === undefined)
        throw new SwitchyardError("an account has no ledger account", { details: `account ${id}` });
      const balance = balanceOf(account.kind, ledgerAccount);
      const format = (value: bigint) => formatAmount(value, account.asset);
      return {
        object: "balance" as const,
        account: account.id,
        asset: account.asset.code,
        available: format(balance.available),
        posted: format(balance.posted),
        pending_out: format(balance.pendingOut),
        pending_in: format(balance.pendingIn),
      };
    },
  );
};

export const accountRoutes = fp(plugin, {
  name: "switchyard-accounts",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
