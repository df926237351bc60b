import Fastify from "fastify";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { SwitchyardError } from "../../core/index.ts";
import { LedgerBackpressureError, LedgerClosedError, LedgerStoreError } from "../ledger/index.ts";
import { ApiError, errorsPlugin, fromZodError, overloaded, RequestValidationError } from "./errors.ts";

describe("the API's errors", () => {
  it("ApiError is a SwitchyardError whose short message is what the client reads", () => {
    const error = new ApiError("payment_not_found", 'no payment "pay_1"', { param: "payment" });
    expect(error).toBeInstanceOf(SwitchyardError);
    expect(error.name).toBe("ApiError");
    expect(error.shortMessage).toBe('no payment "pay_1"');
    expect(error.message).toBe('no payment "pay_1"');
    expect(error.body()).toEqual({
      error: { code: "payment_not_found", message: 'no payment "pay_1"', param: "payment" },
    });
  });

  it("answers an object not found 404 when the path names it, 400 when a parameter of the request does (Stripe's resource_missing)", () => {
    expect(new ApiError("payment_not_found", 'no payment "pay_1"').status).toBe(404);
    expect(new ApiError("payment_not_found", 'no payment "pay_1"', { param: "payment" }).status).toBe(400);
    expect(new ApiError("account_not_found", "no account", { param: "methods.2.account" }).status).toBe(400);
    // Other codes keep their status, with a param or without.
    expect(new ApiError("insufficient_funds", "short", { param: "source.account" }).status).toBe(402);
    expect(new ApiError("quote_used", "used", { param: "quote" }).status).toBe(409);
    expect(new ApiError("route_not_found", "no route").status).toBe(404);
  });

  it("RequestValidationError is a SwitchyardError carrying the zod error as its cause", () => {
    const result = z.strictObject({ amount: z.string() }).safeParse({ amount: 1 }, { reportInput: true });
    if (result.success) throw new Error("the parse was expected to fail");
    const error = new RequestValidationError(result.error);
    expect(error).toBeInstanceOf(SwitchyardError);
    expect(error.name).toBe("RequestValidationError");
    expect(error.shortMessage).toBe("the request does not match its schema");
    expect(error.cause).toBe(result.error);
    expect(error.details).toMatch(/^amount: /);
    expect(fromZodError(error.zodError).body().error).toMatchObject({
      code: "parameter_invalid",
      param: "amount",
    });
  });

  it("tells a missing parameter from a wrong one and from an unknown one", () => {
    const schema = z.strictObject({ source: z.strictObject({ account: z.string() }) });
    const code = (data: unknown) => {
      const result = schema.safeParse(data, { reportInput: true });
      if (result.success) throw new Error("the parse was expected to fail");
      const { error } = fromZodError(result.error).body();
      return [error.code, error.param];
    };
    expect(code({ source: {} })).toEqual(["parameter_missing", "source.account"]);
    expect(code({ source: { account: 1 } })).toEqual(["parameter_invalid", "source.account"]);
    expect(code({ source: { account: "a", acount: "b" } })).toEqual(["parameter_unknown", "source.acount"]);
  });

  it("overloaded is 503 with a Retry-After in whole seconds", async () => {
    const error = overloaded("too many requests in flight");
    expect([error.status, error.retryAfterSeconds]).toEqual([503, 1]);
    const server = Fastify();
    await server.register(errorsPlugin);
    server.get("/", async () => {
      throw error;
    });
    const response = await server.inject({ method: "GET", url: "/" });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    expect(response.json()).toEqual({
      error: { code: "overloaded", message: "too many requests in flight" },
    });
    await server.close();
  });
});

describe("the error plugin and the ledger's full queue", () => {
  const answer = async (thrown: Error) => {
    const server = Fastify({ logger: false });
    await server.register(errorsPlugin);
    server.post("/pay", async () => {
      throw thrown;
    });
    const response = await server.inject({ method: "POST", url: "/pay" });
    await server.close();
    return {
      status: response.statusCode,
      retryAfter: response.headers["retry-after"],
      body: response.json(),
    };
  };
  const full = () => new LedgerBackpressureError({ queuedTransfers: 4, queueTransfersMax: 4 });

  it("answers LedgerBackpressureError 503 overloaded with Retry-After, by its class, not its message", async () => {
    const direct = await answer(full());
    expect(direct).toMatchObject({ status: 503, retryAfter: "1", body: { error: { code: "overloaded" } } });
    // As the cause of a service's error, too.
    const wrapped = await answer(new SwitchyardError("the payment could not be written", { cause: full() }));
    expect(wrapped).toMatchObject({ status: 503, retryAfter: "1", body: { error: { code: "overloaded" } } });
    // Another error with the same words is not a full queue.
    const lookalike = await answer(new SwitchyardError("ledger writer queue is full"));
    expect(lookalike).toMatchObject({ status: 500, body: { error: { code: "internal_error" } } });
    expect(lookalike.retryAfter).toBeUndefined();
    const store = await answer(new LedgerStoreError("connection lost", { cause: new Error("ECONNRESET") }));
    expect(store).toMatchObject({ status: 500, body: { error: { code: "internal_error" } } });
  });

  it("answers the database too busy (a statement timeout, a lock, a deadlock) 503 overloaded, anything else of it 500", async () => {
    // A server's error as node-postgres gives it: a DatabaseError with its SQLSTATE.
    const server = (code: string) =>
      Object.assign(new pg.DatabaseError("canceling statement", 60, "error"), { code, severity: "ERROR" });
    for (const code of ["57014", "55P03", "40P01", "40001"]) {
      // As the ledger's store failure, and as the cause of a service's error around it, and as a statement's own.
      const ledger = new LedgerStoreError("batch", { cause: server(code) });
      for (const thrown of [
        ledger,
        new SwitchyardError("the payment could not be written", { cause: ledger }),
        server(code),
      ]) {
        expect([code, thrown.name, await answer(thrown)]).toEqual([
          code,
          thrown.name,
          expect.objectContaining({
            status: 503,
            retryAfter: "1",
            body: { error: expect.objectContaining({ code: "overloaded" }) },
          }),
        ]);
      }
    }
    // Another SQLSTATE is a fault of ours; and only a server's error says what the database did, not any `code`.
    for (const thrown of [
      new LedgerStoreError("batch", { cause: server("23505") }),
      Object.assign(new Error("canceling statement"), { code: "57014" }),
    ]) {
      expect(await answer(thrown)).toMatchObject({
        status: 500,
        body: { error: { code: "internal_error" } },
      });
    }
  });

  it("answers a ledger closed under a request (the process stopping) 503 overloaded, not 500", async () => {
    const closing = await answer(new LedgerClosedError());
    expect(closing).toMatchObject({ status: 503, retryAfter: "1", body: { error: { code: "overloaded" } } });
  });
});
