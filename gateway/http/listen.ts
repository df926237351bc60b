// Listening for the API on several sockets of one port. Node (libuv) takes one new connection from a listening socket
// per turn of the event loop, and a turn of a loaded gateway is a few milliseconds of work (on PGlite, the database's
// exchanges run in it too): 128 connections opened at once waited in the kernel's accept queue for 0.4–1 s, one taken
// every 5 ms, their first requests' answers with them (issue #19, internal-pglite at 128 clients: the slowest answer of
// the first second 440–990 ms in 6 of 7 runs, every other second under 110 ms; `ss` showed the queue at 123 draining by
// one every 5 ms). Several listening sockets bound to the port with SO_REUSEPORT, each given its share of new
// connections by the kernel, are taken from `acceptors` at a time: each hands its connections to the one HTTP server,
// whose other connections they then are in every way (timeouts, keep-alive, closing).
//
// SO_REUSEPORT lets another socket of the same user join the port. So that a second gateway started on the same port
// still fails as it did (EADDRINUSE) instead of sharing it, the port is first bound and released by a plain socket,
// which any listener there refuses. Linux only: elsewhere one socket, as before.
import type { Server } from "node:http";
import net from "node:net";
import type { FastifyInstance, FastifyListenOptions } from "fastify";

/** Listening sockets for the API: the server's own and the acceptors beside it. */
export const acceptorsDefault = 8;

export type Listening = {
  /** The server's address as Fastify gives it (http://host:port). */
  address: string;
  /** How many sockets listen (1 where SO_REUSEPORT is not used). */
  sockets: number;
  /** Stops the acceptors taking connections (the server's own socket closes with the app). */
  close(): Promise<void>;
};

/** Fails as a listener already on the port makes any plain bind fail: EADDRINUSE. Port 0 needs no check. */
async function portFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

export async function listenApi(
  app: FastifyInstance,
  options: { host: string; port: number; backlog: number; acceptors?: number },
): Promise<Listening> {
  const acceptors = process.platform === "linux" ? Math.max(1, options.acceptors ?? acceptorsDefault) : 1;
  const listen: FastifyListenOptions = { host: options.host, port: options.port, backlog: options.backlog };
  if (acceptors === 1) {
    const address = await app.listen(listen);
    return { address, sockets: 1, close: async () => undefined };
  }
  await portFree(options.host, options.port);
  // Not in Fastify's listen options' type; passed on to Node's server.listen (Node 22.12+).
  const address = await app.listen({ ...listen, reusePort: true } as FastifyListenOptions);
  const server: Server = app.server;
  const bound = server.address();
  if (bound === null || typeof bound === "string")
    return { address, sockets: 1, close: async () => undefined };
  // The options Node's HTTP server gave its own socket, so that an acceptor's connections are alike.
  const own = server as unknown as {
    allowHalfOpen?: boolean;
    noDelay?: boolean;
    keepAlive?: boolean;
    keepAliveInitialDelay?: number;
    highWaterMark?: number;
  };
  const extra: net.Server[] = [];
  const closeExtra = () =>
    Promise.all(extra.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  try {
    for (let i = 1; i < acceptors; i += 1) {
      const acceptor = net.createServer(
        {
          allowHalfOpen: own.allowHalfOpen ?? true,
          noDelay: own.noDelay ?? true,
          keepAlive: own.keepAlive ?? false,
          keepAliveInitialDelay: own.keepAliveInitialDelay ?? 0,
          ...(own.highWaterMark === undefined ? {} : { highWaterMark: own.highWaterMark }),
        },
        (socket) => server.emit("connection", socket),
      );
      extra.push(acceptor);
      await new Promise<void>((resolve, reject) => {
        acceptor.once("error", reject);
        acceptor.listen(
          { host: bound.address, port: bound.port, backlog: options.backlog, reusePort: true },
          () => {
            acceptor.off("error", reject);
            resolve();
          },
        );
      });
    }
  } catch (error) {
    // The server's own socket is listening: the app's close takes it; these are ours.
    await closeExtra();
    throw error;
  }
  // Whoever closes the server stops the acceptors first: no connection handed to a closing server.
  server.once("close", () => void closeExtra());
  return {
    address,
    sockets: acceptors,
    close: async () => {
      await closeExtra();
    },
  };
}
