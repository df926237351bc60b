// A small HTTP control channel for a cluster owned by another process (vitest's globalSetup owns the
// processes; test workers stop/start nodes and mine blocks through this).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { type NodeName, nodeNames, type RegtestCluster } from "./cluster.ts";

export type ClusterControlServer = { readonly url: string; close(): Promise<void> };

const blocksPerRequestMax = 1000;
const controlRequestTimeoutMs = 180_000;

export async function serveClusterControl(cluster: RegtestCluster): Promise<ClusterControlServer> {
  const isNode = (name: string): name is NodeName => (nodeNames as readonly string[]).includes(name);
  const server = http.createServer((request, response) => {
    const parts = (request.url ?? "").split("/").filter(Boolean);
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    const run = async (): Promise<unknown> => {
      if (request.method !== "POST") return null;
      const [resource, name, action] = parts;
      if (resource === "nodes" && name !== undefined && isNode(name)) {
        const node = cluster.nodes[name];
        if (action === "stop") return await node.stop().then(() => ({ stopped: name }));
        if (action === "start") return await node.start().then(() => ({ started: name }));
        if (action === "restart") return await node.restart().then(() => ({ restarted: name }));
      }
      if (resource === "mine" && name !== undefined) {
        const blocks = Number(name);
        if (!Number.isSafeInteger(blocks) || blocks < 1 || blocks > blocksPerRequestMax) return null;
        await cluster.mine(blocks);
        return { mined: blocks };
      }
      return null;
    };
    run().then(
      (body) => (body === null ? reply(404, { error: "not_found" }) : reply(200, body)),
      (error: unknown) => reply(500, { error: String(error) }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export type ClusterControl = {
  stopNode(name: NodeName): Promise<void>;
  startNode(name: NodeName): Promise<void>;
  restartNode(name: NodeName): Promise<void>;
  mine(blocks: number): Promise<void>;
};

export class ClusterControlError extends Error {
  override readonly name = "ClusterControlError";
}

export function clusterControl(url: string): ClusterControl {
  const post = async (pathname: string) => {
    const response = await fetch(`${url}${pathname}`, {
      method: "POST",
      signal: AbortSignal.timeout(controlRequestTimeoutMs),
    });
    if (!response.ok)
      throw new ClusterControlError(`${pathname}: ${response.status} ${await response.text()}`);
  };
  return {
    stopNode: (name) => post(`/nodes/${name}/stop`),
    startNode: (name) => post(`/nodes/${name}/start`),
    restartNode: (name) => post(`/nodes/${name}/restart`),
    mine: (blocks) => post(`/mine/${blocks}`),
  };
}
