// The private PostgreSQL of test/support asks the kernel for a free port, and another run may take that port before
// postgres binds it. Then it starts on another port rather than failing, and it never takes the server that took the
// port (trust auth: it would answer) for its own.
import net from "node:net";
import pg from "pg";
import { afterEach, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/free-port.ts";
import { type RunningPostgres, startPostgres } from "../support/postgres.ts";

const started: RunningPostgres[] = [];
const listeners: net.Server[] = [];

afterEach(async () => {
  for (const server of started.splice(0)) await server.stop();
  for (const listener of listeners.splice(0)) await new Promise((resolve) => listener.close(resolve));
});

async function dataDirectory(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ data_directory: string }>("SHOW data_directory")).rows[0]!.data_directory;
  } finally {
    await client.end();
  }
}

it("starts on the next free port when the first is taken by another PostgreSQL meanwhile, and is its own server", async () => {
  const other = await startPostgres();
  started.push(other);
  const otherDir = await dataDirectory(other.url);
  // The first port it is given is the other server's, as if that run had bound it after this one asked for it.
  const ports = [other.port];
  const ours = await startPostgres({ port: async () => ports.shift() ?? freePort() });
  started.push(ours);
  expect(ours.port).not.toBe(other.port);
  const ourDir = await dataDirectory(ours.url);
  expect(ourDir).not.toBe(otherDir);
});

it("starts on the next free port when the first is taken by anything else", async () => {
  const listener = net.createServer((socket) => socket.destroy());
  listeners.push(listener);
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const taken = (listener.address() as net.AddressInfo).port;
  const ports = [taken];
  const ours = await startPostgres({ port: async () => ports.shift() ?? freePort() });
  started.push(ours);
  expect(ours.port).not.toBe(taken);
  await dataDirectory(ours.url);
});
