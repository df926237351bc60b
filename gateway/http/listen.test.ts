// The API's listening sockets (listen.ts): connections the kernel completed while the loop was busy are taken a few
// turns of the loop later, not one a turn; they reach the one HTTP server and are answered; a second gateway on the
// port is refused; closing stops them all. Counted in turns of the loop, not timed.
import { execFileSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { acceptorsDefault, type Listening, listenApi, portLockPath } from "./listen.ts";

const opened: { app: FastifyInstance; listening: Listening | null }[] = [];

/** A gateway's API on `port` with the default sockets. */
async function serveOn(port: number) {
  const app = Fastify();
  const entry: { app: FastifyInstance; listening: Listening | null } = { app, listening: null };
  opened.push(entry);
  entry.listening = await listenApi(app, { host: "127.0.0.1", port, backlog: 1024 });
  return { app, listening: entry.listening };
}

async function serve(acceptors: number) {
  const app = Fastify();
  app.get("/ping", async () => ({ ok: true }));
  const entry: { app: FastifyInstance; listening: Listening | null } = { app, listening: null };
  opened.push(entry);
  entry.listening = await listenApi(app, { host: "127.0.0.1", port: 0, backlog: 1024, acceptors });
  const port = (app.server.address() as net.AddressInfo).port;
  return { app, listening: entry.listening, port };
}

afterEach(async () => {
  for (const { app, listening } of opened.splice(0)) {
    await listening?.close();
    await app.close();
  }
});

/**
 * Opens `count` connections to `port` from another process while this one's loop is blocked, so that all of them wait
 * in the kernel's accept queues; then counts the turns of this loop until the server has taken them all.
 */
async function turnsToAccept(server: http.Server, port: number, count: number): Promise<number> {
  let taken = 0;
  const onConnection = () => {
    taken += 1;
  };
  server.on("connection", onConnection);
  // Blocks this loop until the child has connected them all (the handshakes complete in the kernel) and left.
  execFileSync(process.execPath, [
    "-e",
    `const net = require("node:net"); let n = 0; const sockets = [];
     for (let i = 0; i < ${count}; i++) sockets.push(net.connect(${port}, "127.0.0.1", () => { if (++n === ${count}) process.exit(0); }));`,
  ]);
  let turns = 0;
  while (taken < count && turns < count * 4) {
    await new Promise((resolve) => setImmediate(resolve));
    turns += 1;
  }
  server.off("connection", onConnection);
  expect(taken).toBe(count);
  return turns;
}

// On Linux, as the project is (SO_REUSEPORT spreads connections there; elsewhere listenApi keeps one socket).
describe("listenApi", () => {
  it("takes a burst of waiting connections in a few turns of the loop, where one socket takes one a turn", async () => {
    const one = await serve(1);
    expect(one.listening.sockets).toBe(1);
    const single = await turnsToAccept(one.app.server, one.port, 64);
    expect(single).toBeGreaterThanOrEqual(48); // the behaviour the acceptors are for: about one a turn

    const eight = await serve(8);
    expect(eight.listening.sockets).toBe(8);
    const several = await turnsToAccept(eight.app.server, eight.port, 64);
    expect(several).toBeLessThanOrEqual(single / 2);
  });

  it("takes a burst of hundreds of waiting connections in a few dozen turns with the default sockets", async () => {
    // A burst of new connections under load (the HTTP bench's overload case at 4,096 clients, each turn of the
    // gateway's loop tens of milliseconds long): 8 sockets took 73–85 turns for 512 of them (the fullest socket's
    // share), 64 took 14–15, 256 took 7–8.
    const { app, listening, port } = await serve(acceptorsDefault);
    expect(listening.sockets).toBe(acceptorsDefault);
    expect(await turnsToAccept(app.server, port, 512)).toBeLessThanOrEqual(40);
  });

  it("answers requests on connections taken by every socket, through the one server", async () => {
    const { port } = await serve(4);
    const get = () =>
      new Promise<number>((resolve, reject) => {
        // A connection of its own for each request.
        const request = http.get({ host: "127.0.0.1", port, path: "/ping", agent: false }, (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode ?? 0));
        });
        request.on("error", reject);
      });
    const statuses = await Promise.all(Array.from({ length: 64 }, get));
    // The kernel spreads new connections over the 4 sockets (all 64 on the server's own: 4^-64): an acceptor's
    // connection the server did not take up would leave its request unanswered.
    expect(statuses.every((status) => status === 200)).toBe(true);
  });

  it("counts every socket's connections among the server's own, the count its close waits on", async () => {
    const { app, port } = await serve(8);
    let taken = 0;
    app.server.on("connection", () => {
      taken += 1;
    });
    const sockets = Array.from({ length: 32 }, () => net.connect(port, "127.0.0.1"));
    try {
      while (taken < 32) await new Promise((resolve) => setImmediate(resolve));
      const counted = await new Promise<number>((resolve, reject) =>
        app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
      );
      expect(counted).toBe(32);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it("refuses a second gateway on a port in use, as a single socket did", async () => {
    const { port } = await serve(8);
    const second = Fastify();
    try {
      await expect(
        listenApi(second, { host: "127.0.0.1", port, backlog: 16, acceptors: 8 }),
      ).rejects.toMatchObject({ code: "EADDRINUSE" });
      expect(second.server.listening).toBe(false);
    } finally {
      await second.close();
    }
  });

  it("refuses a gateway while another starting on the port holds its lock, between its probe and its bind", async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    // Another gateway that has passed its probe of the free port and not yet bound it: the port is free, its lock held.
    // Without the lock both would pass the probe and then share the port through SO_REUSEPORT; the lock is the port's
    // whatever address each was given (0.0.0.0 overlaps 127.0.0.1).
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen({ path: portLockPath(port) }, resolve));
    const second = Fastify();
    try {
      const refusal = listenApi(second, { host: "127.0.0.1", port, backlog: 16, acceptors: 8 });
      await expect(refusal).rejects.toMatchObject({ code: "EADDRINUSE" });
      // Said of the address asked for.
      await expect(refusal).rejects.toThrow(`127.0.0.1:${port}`);
      expect(second.server.listening).toBe(false);
    } finally {
      await second.close();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
    // Its holder gone, the port is had, and the lock let go once the server's socket is bound: a later gateway is
    // refused by the probe, on any address of the port.
    await serveOn(port);
    const locked = net.createServer();
    await new Promise<void>((resolve) => locked.listen({ path: portLockPath(port) }, resolve));
    await new Promise<void>((resolve) => locked.close(() => resolve()));
    const third = Fastify();
    try {
      await expect(
        listenApi(third, { host: "0.0.0.0", port, backlog: 16, acceptors: 8 }),
      ).rejects.toMatchObject({ code: "EADDRINUSE" });
    } finally {
      await third.close();
    }
  });

  it("stops every socket when closed", async () => {
    const { app, listening, port } = await serve(8);
    await listening.close();
    await app.close();
    opened.length = 0;
    const refused = await Promise.all(
      Array.from(
        { length: 16 },
        () =>
          new Promise<string>((resolve) => {
            const socket = net.connect(port, "127.0.0.1");
            socket.on("connect", () => {
              socket.destroy();
              resolve("connected");
            });
            socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
          }),
      ),
    );
    expect(new Set(refused)).toEqual(new Set(["ECONNREFUSED"]));
  });
});
