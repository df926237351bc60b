// Listening for the API on several sockets of one port. Node (libuv) takes one new connection from a listening socket
// per turn of the event loop, and a turn of a loaded gateway is a few milliseconds of work (on PGlite, the database's
// exchanges run in it too): 128 connections opened at once waited in the kernel's accept queue for up to a second, one
// taken every 5 ms, their first requests with them (issue #19, internal-pglite at 128 clients, the measured row's
// first second: its slowest answer 200–990 ms in 13 of 14 runs, 440 ms or more in 10, where the other seconds' stayed
// under 110 ms; `ss` showed the queue at 123 draining by one every 5 ms; with 8 sockets 47–129 ms in 5 of 5). Several
// sockets bound to the port with SO_REUSEPORT, among which the kernel spreads new connections, are each taken from
// once a turn; each hands its connections to the one HTTP server, whose connections they then are in every way
// (timeouts, keep-alive, closing). (libuv accepts one connection per readiness of a listening socket since it stopped
// accepting in a loop, libuv#3696.)
//
// How many: a turn of a gateway past saturation is tens of milliseconds, and a burst of new connections then is as
// large as the clients are many. The HTTP bench's overload case (twice the sustainable rate offered), one run each:
// - 4,096 clients: with 8 sockets, 1,145 of them had an answer in the first second and all only after 9 s, the slowest
//   first answer 9.7 s, p99 7.8 s, 9,203 payments/s; with 64, all in the first second, the slowest 653 ms, p99 517 ms
//   (the in-flight bound over the throughput), 10,455/s; with 256 the same (530 ms, 10,276/s).
// - 8,192 clients, past the in-flight bound (REQUESTS_IN_FLIGHT_MAX, 4,096; the rest answered 503): with 64 sockets,
//   every client had a first answer only after 12 s, p99 6.1 s, 5,852 payments/s served and ~7,100 a second refused;
//   with 256, after 4 s, p99 1.9 s, 5,506/s served and ~10,000 refused (the load tool, on the same two cores, took a
//   third of the machine).
// A listening socket costs a descriptor, and nothing while no connection waits on it; 256 of them listen in 4–15 ms.
//
// SO_REUSEPORT lets another socket of the same user join the port. So that a second gateway started on the same port
// still fails as it did (EADDRINUSE) instead of sharing it, the port is first bound and released by a plain socket,
// which any listener there refuses. Between that probe and the bind another gateway starting at the same moment could
// pass the same probe, and both would then share the port: so the probe and the bind are made holding a lock on the
// port, a listening socket in Linux's abstract namespace named after it, which only one process can hold and the
// kernel frees with the process however it ends. Named after the port alone: two gateways on one port, one given
// 0.0.0.0 and one 127.0.0.1 (or localhost), overlap as much as two given the same address. Once the server's socket
// is bound, the probe itself refuses every later gateway, and the lock is let go. Linux only: elsewhere one socket,
// as before.
import type { Server } from "node:http";
import net from "node:net";
import type { FastifyInstance, FastifyListenOptions } from "fastify";

/** Listening sockets for the API: the server's own and the acceptors beside it (see above for why 256). */
export const acceptorsDefault = 256;

export type Listening = {
  /** The server's address as Fastify gives it (http://host:port). */
  address: string;
  /** How many sockets listen (1 where SO_REUSEPORT is not used). */
  sockets: number;
  /** Stops the acceptors taking connections (the server's own socket closes with the app). */
  close(): Promise<void>;
};

/** The lock's name in the abstract namespace (a leading NUL: no file, gone with its last holder). */
export function portLockPath(port: number): string {
  return `\0switchyard-api-port:${port}`;
}

/**
 * Holds the lock on `port` (see above), or fails with EADDRINUSE while another holds it. Port 0 needs none: the
 * kernel gives each such bind its own port.
 */
async function lockPort(host: string, port: number): Promise<net.Server | null> {
  if (port === 0) return null;
  const lock = net.createServer();
  await new Promise<void>((resolve, reject) => {
    lock.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EADDRINUSE") return reject(error);
      // Said of the address asked for, not of the lock's name (which starts with a NUL).
      const inUse: NodeJS.ErrnoException = new Error(
        `listen EADDRINUSE: address already in use ${host}:${port} (another gateway is starting on the port)`,
      );
      inUse.code = "EADDRINUSE";
      reject(inUse);
    });
    lock.listen({ path: portLockPath(port), exclusive: true }, () => {
      lock.removeAllListeners("error");
      resolve();
    });
  });
  // Never accepted on: a connection to it is closed at once. Nor does it keep the process alive on its own.
  lock.on("connection", (socket) => socket.destroy());
  lock.unref();
  return lock;
}

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
  if (acceptors === 1) return { address: await app.listen(listen), sockets: 1, close: async () => undefined };
  const lock = await lockPort(options.host, options.port);
  const unlock = () => {
    if (lock?.listening) lock.close();
  };
  let address: string;
  try {
    await portFree(options.host, options.port);
    // Not in Fastify's listen options' type; passed on to Node's server.listen (Node 22.12+).
    address = await app.listen({ ...listen, reusePort: true } as FastifyListenOptions);
  } finally {
    // Bound (a later gateway's probe fails on it now) or failed: the lock has done its work either way.
    unlock();
  }
  const server: Server = app.server;
  // Listening on a host and port, never a pipe: an address and port.
  const bound = server.address() as net.AddressInfo;
  // The options Node's HTTP server gave its own socket, so that an acceptor's connections are alike.
  const own = server as unknown as {
    allowHalfOpen?: boolean;
    noDelay?: boolean;
    keepAlive?: boolean;
    keepAliveInitialDelay?: number;
    highWaterMark?: number;
  };
  // An acceptor's connection is counted as one of the server's own (Node's count, which getConnections reads and
  // close waits on): closing the server waits for the requests in flight on every connection, as it did with one
  // socket, before the app closes its database. Where that count is not found, connections are handed over uncounted.
  const counted = server as unknown as { _connections?: unknown; _emitCloseIfDrained?: unknown };
  const adopt =
    typeof counted._connections === "number" && typeof counted._emitCloseIfDrained === "function"
      ? (socket: net.Socket) => {
          (counted._connections as number) += 1;
          socket.once("close", () => {
            (counted._connections as number) -= 1;
            (counted._emitCloseIfDrained as () => void).call(server);
          });
        }
      : () => undefined;
  const extra: net.Server[] = [];
  // Stops them taking connections at once; the connections they took are the server's to close.
  const closeExtra = () => {
    for (const acceptor of extra) if (acceptor.listening) acceptor.close();
  };
  try {
    for (let i = 1; i < acceptors; i += 1) {
      const acceptor = net.createServer(
        {
          allowHalfOpen: own.allowHalfOpen ?? true,
          noDelay: own.noDelay ?? true,
          keepAlive: own.keepAlive ?? false,
          // Kept in seconds by the server, given in milliseconds.
          keepAliveInitialDelay: (own.keepAliveInitialDelay ?? 0) * 1000,
          ...(own.highWaterMark === undefined ? {} : { highWaterMark: own.highWaterMark }),
        },
        (socket) => {
          adopt(socket);
          server.emit("connection", socket);
        },
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
      // A failed accept (out of file descriptors) is said, not thrown: the server's other sockets go on.
      acceptor.on("error", (error) =>
        app.log.error({ err: error }, "an API listening socket failed to accept"),
      );
    }
  } catch (error) {
    // The server's own socket is listening: the app's close takes it; these are ours.
    closeExtra();
    throw error;
  }
  // Closed by whoever closes the server, if not before (main.ts closes them first: no connection is then handed to a
  // closing server, which would answer its requests 503).
  server.once("close", closeExtra);
  return {
    address,
    sockets: acceptors,
    close: async () => closeExtra(),
  };
}
