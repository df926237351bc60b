// /v1/payees: whom the tenant pays and the ways each can be paid. Create (with Idempotency-Key, claimed first as
// on most routes), retrieve and update (each field given is replaced whole); the list is with the others, in
// ./lists.ts. Another tenant's payee is not found, never forbidden.
import fp from "fastify-plugin";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { everyMember, type Rail } from "../../../core/index.ts";
import type { AccountCache } from "../../accounts/index.ts";
import type { Db } from "../../db/index.ts";
import {
  createPayee,
  getPayee,
  type Payee,
  type PayeeMethod,
  type PayeeRefusal,
  type PayeeResult,
  type PayeesDeps,
  updatePayee,
} from "../../payees/index.ts";
import { tenantOf } from "../auth.ts";
import { ApiError } from "../errors.ts";
import {
  createPayeeBody,
  errorView,
  idParams,
  type PayeeMethodBody,
  type PayeeView,
  payeeView,
  updatePayeeBody,
} from "../schemas.ts";

export type PayeeRoutesOptions = {
  db: Db;
  accounts: AccountCache;
  /** The rails, each asked whether a method is one of the gateway's own addresses (Rail.ownsDestination). */
  rails: ReadonlyMap<string, Rail>;
  nowMs: () => number;
};

/** Whether any rail owns the destination. */
export function ownedByGateway(rails: ReadonlyMap<string, Rail>) {
  return async (destination: PayeeMethod): Promise<boolean> => {
    const asks: Promise<boolean>[] = [];
    for (const rail of rails.values())
      if (rail.ownsDestination !== undefined) asks.push(rail.ownsDestination(destination));
    return (await Promise.all(asks)).includes(true);
  };
}

/** What a payee's methods are refused with, made or changed: every PayeeRefusal but PATCH's path's (its 404). */
const methodRefusals = everyMember<Exclude<PayeeRefusal, "payee_not_found">>({
  payee_method_duplicate: true,
  account_not_found: true,
  destination_is_gateway: true,
});

function methodFromBody(body: PayeeMethodBody): PayeeMethod {
  switch (body.type) {
    case "evm_address":
      return {
        kind: "evm_address",
        address: body.address as `0x${string}`,
        ...(body.chain_id === undefined || body.chain_id === null ? {} : { chainId: body.chain_id }),
      };
    case "lightning_node":
      return { kind: "lightning_node", pubkey: body.pubkey };
    case "lightning_address":
      return { kind: "lightning_address", address: body.address };
    case "stripe_account":
      return { kind: "stripe_account", accountId: body.account };
    case "account":
      return { kind: "account", accountId: body.account };
  }
}

function presentMethod(method: PayeeMethod): PayeeView["methods"][number] {
  switch (method.kind) {
    case "evm_address":
      return { type: "evm_address", address: method.address, chain_id: method.chainId ?? null };
    case "lightning_node":
      return { type: "lightning_node", pubkey: method.pubkey };
    case "lightning_address":
      return { type: "lightning_address", address: method.address };
    case "stripe_account":
      return { type: "stripe_account", account: method.accountId };
    case "account":
      return { type: "account", account: method.accountId };
  }
}

export function presentPayee(payee: Payee): PayeeView {
  return {
    id: payee.id,
    object: "payee",
    name: payee.name,
    methods: payee.methods.map(presentMethod),
    metadata: payee.metadata,
    created_at: payee.createdAt.toISOString(),
    updated_at: payee.updatedAt.toISOString(),
  };
}

/** The payee written, or the refusal as the API error it is. */
function payeeOf(result: PayeeResult): Payee {
  if (result.ok) return result.payee;
  throw new ApiError(
    result.refusal,
    result.message,
    result.param === undefined ? {} : { param: result.param },
  );
}

const plugin: FastifyPluginAsyncZod<PayeeRoutesOptions> = async (app, options) => {
  const deps: PayeesDeps = {
    sql: options.db,
    accounts: options.accounts,
    ownsDestination: ownedByGateway(options.rails),
    nowMs: options.nowMs,
  };

  app.post(
    "/payees",
    {
      schema: { body: createPayeeBody, response: { 201: payeeView, "4xx": errorView } },
      config: { errorCodes: methodRefusals },
    },
    async (request, reply) => {
      const { body } = request;
      const result = await createPayee(deps, {
        tenantId: tenantOf(request).id,
        name: body.name,
        metadata: body.metadata ?? {},
        methods: body.methods.map(methodFromBody),
      });
      return reply.code(201).send(presentPayee(payeeOf(result)));
    },
  );

  app.get(
    "/payees/:id",
    { schema: { params: idParams("pye"), response: { 200: payeeView, "4xx": errorView } } },
    async (request) => {
      const { id } = request.params;
      const payee = await getPayee(options.db, { tenantId: tenantOf(request).id, id });
      if (payee === null) throw new ApiError("payee_not_found", `no payee "${id}"`);
      return presentPayee(payee);
    },
  );

  app.patch(
    "/payees/:id",
    {
      schema: {
        params: idParams("pye"),
        body: updatePayeeBody,
        response: { 200: payeeView, "4xx": errorView },
      },
      config: { errorCodes: methodRefusals },
    },
    async (request) => {
      const { body } = request;
      const result = await updatePayee(deps, {
        tenantId: tenantOf(request).id,
        id: request.params.id,
        ...(body.name === undefined ? {} : { name: body.name }),
        ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
        ...(body.methods === undefined ? {} : { methods: body.methods.map(methodFromBody) }),
      });
      return presentPayee(payeeOf(result));
    },
  );
};

export const payeeRoutes = fp(plugin, {
  name: "switchyard-payees",
  encapsulate: true,
  dependencies: ["switchyard-auth"],
  decorators: { request: ["tenant"] },
});
