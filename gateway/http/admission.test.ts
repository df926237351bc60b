// The per-tenant share of the requests in flight (admission.ts tenantAdmissionPlugin), on a bare Fastify server with
// an auth stand-in whose key lookup the test holds: a client that hangs up while its key is looked up leaves nothing
// counted. (The share's answers and counts through the whole app: test/http/backpressure.test.ts.)
import net from "node:net";
import Fastify from "fastify";
import fp from "fastify-plugin";
import { afterEach, expect, it, vi } from "vitest";
import { admissionPlugin, createAdmission, tenantAdmissionPlugin } from "./admission.ts";

const servers: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

it("counts nothing of a request whose client hung up while its key was looked up", async () => {
  const admission = createAdmission({ requestsInFlightMax: 8, tenantRequestsInFlightMax: 2 });
  let lookedUp = () => {};
  const lookup = new Promise<void>((resolve) => {
    lookedUp = resolve;
  });
  let asked = false;
  const app = Fastify();
  servers.push(app);
  await app.register(admissionPlugin, { admission });
  // As auth does: the tenant set by an onRequest hook that waits for the database (here, for the test).
  await app.register(
    fp(
      async (instance) => {
        instance.decorateRequest("tenant", null);
        instance.decorateRequest("operator", false);
        instance.addHook("onRequest", async (request) => {
          asked = true;
          await lookup;
          request.tenant = { id: "ten_a", name: "A" };
        });
      },
      { name: "switchyard-auth" },
    ),
  );
  await app.register(tenantAdmissionPlugin, { admission });
  app.get("/v1/thing", async () => ({ ok: true }));
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as net.AddressInfo;

  const socket = net.connect(port, "127.0.0.1");
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.write("GET /v1/thing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  await vi.waitFor(() => expect(asked).toBe(true));
  socket.destroy();
  await closed;
  // The server sees the hang-up (its response closes) before the lookup answers.
  await new Promise((resolve) => setTimeout(resolve, 100));
  lookedUp();
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Before: counted after its one 'close', a place of the tenant's held for good.
  expect(admission.requestsInFlightByTenant.get("ten_a")).toBeUndefined();
  const answered = await fetch(`http://127.0.0.1:${port}/v1/thing`);
  expect(answered.status).toBe(200);
  expect(admission.requestsInFlightByTenant.size).toBe(0);
  expect(admission.requestsInFlight).toBe(0);
});
