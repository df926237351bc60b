// A TCP proxy between a pool and PostgreSQL that can go silent without closing a socket, as a half-open socket, a
// partition or a frozen server does: bytes are dropped, nothing says goodbye. Silent everywhere (swallow/pass), or
// on one connection from the moment the pool sends given bytes over it (silenceAt): a statement of the ledger's
// batch, or a COMMIT that still reaches the server (so it is applied and only its answer is lost). What the pool
// sends while silent is kept, to assert which statements it sent (or did not); what the server sends on a connection
// silenced by silenceAt is dropped but kept (silencedAnswered: whether the server answered the COMMIT that passed, not
// merely a statement sent before it in the same chunk). The marker is looked for in a connection's stream, not chunk
// by chunk: a small tail of what it sent before is kept.
import net from "node:net";

export type SilentProxy = {
  url: string;
  /** From now on, bytes in either direction are dropped (what the pool sends kept for swallowedFromPool); no socket is closed. */
  swallow(): void;
  /** From now on, bytes pass again (those swallowed are lost); a connection silenced by silenceAt stays silent. */
  pass(): void;
  /**
   * The next connection over which the pool sends `marker` goes silent from that chunk on, in both directions; the
   * others still pass. The chunk itself is dropped, or with `markerPasses` still reaches the server (a COMMIT is
   * then applied, and only its answer lost). Once: `marker` is forgotten when seen.
   */
  silenceAt(marker: string, options?: { markerPasses?: boolean }): void;
  /** Whether the marker of silenceAt has been seen. */
  silenced(): boolean;
  /**
   * Whether the server, over a connection silenced by silenceAt (its answers dropped, not passed on), has completed a
   * statement whose command tag is `tag` since the marker: with `markerPasses` and tag "COMMIT", the marker's COMMIT
   * is then applied. Anything else it sent says nothing about the COMMIT: the statements sent before it in the same
   * chunk are answered (and flushed) first, each at its own Sync, while the COMMIT may still be unread.
   */
  silencedAnswered(tag: string): boolean;
  /**
   * The server's side of every connection silenced by silenceAt hangs up, as the server's TCP gives up at last:
   * the server rolls back what was open there and releases its locks.
   */
  hangUpSilenced(): void;
  /**
   * Both sides of every connection silenced by silenceAt are reset (a TCP RST each way, as a connection reset is):
   * the server rolls back what was open (a COMMIT it already had stays committed), and the pool hears ECONNRESET
   * mid-statement, then its connection end.
   */
  resetSilenced(): void;
  /** What the pool sent while swallowed, as text (the simple and extended protocol carry statements as text). */
  swallowedFromPool(): string;
  /** While on, a new connection is reset at once, as a server that is down (a failover) refuses it. */
  refuseNew(refusing: boolean): void;
  /** Every open connection is reset, both sides (the server going down). */
  resetAll(): void;
  /** How many connections the pool has opened through the proxy, refused ones included. */
  connectionsMade(): number;
  close(): Promise<void>;
};

/** How much of what a connection sent before a chunk is kept to find a marker split across chunks (and its length bound). */
const markerBytesMax = 256;

export async function startSilentProxy(targetUrl: string): Promise<SilentProxy> {
  const target = new URL(targetUrl);
  let swallowing = false;
  let armed: { marker: string; markerPasses: boolean } | null = null;
  let markerSeen = false;
  /** What the server sent over connections silenced by silenceAt since the marker (dropped). */
  let answeredAfterMarker: Buffer[] = [];
  const swallowed: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  /** The server sides of connections silenced by silenceAt, each with its pool side. */
  const silencedUpstreams = new Map<net.Socket, net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined); // a reset is what the test causes; the pool hears it on its own side
    socket.on("close", () => sockets.delete(socket));
  };
  let refusing = false;
  let connections = 0;
  const server = net.createServer((downstream) => {
    connections += 1;
    if (refusing) {
      downstream.on("error", () => undefined);
      downstream.resetAndDestroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    track(downstream);
    track(upstream);
    const silent = () => swallowing || silencedUpstreams.has(upstream);
    /** The last bytes the pool sent before this chunk: a marker may begin there. */
    let tail = Buffer.alloc(0);
    /**
     * Whether this chunk from the pool completes the armed marker, which silences this connection from this chunk on
     * (and the chunk passes or not; a marker begun in an earlier chunk has passed that far).
     */
    const silences = (chunk: Buffer) => {
      const seen = Buffer.concat([tail, chunk]);
      // Only a marker that ends in this chunk: one wholly in the tail was sent before (and before it was armed).
      const from = Math.max(0, tail.length - Buffer.byteLength(armed?.marker ?? "", "latin1") + 1);
      tail = seen.subarray(Math.max(0, seen.length - markerBytesMax));
      if (armed === null || !seen.includes(armed.marker, from, "latin1")) return false;
      tail = Buffer.alloc(0);
      if (armed.markerPasses) upstream.write(chunk);
      else swallowed.push(chunk);
      silencedUpstreams.set(upstream, downstream);
      armed = null;
      markerSeen = true;
      return true;
    };
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => {
        if (from === downstream && !silent() && silences(chunk)) return;
        if (!silent()) to.write(chunk);
        else if (from === downstream) swallowed.push(chunk);
        else if (silencedUpstreams.has(upstream)) answeredAfterMarker.push(chunk);
      });
      // A silent peer says nothing, not even goodbye.
      from.on("close", () => {
        if (!silent()) to.destroy();
      });
    };
    forward(downstream, upstream);
    forward(upstream, downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(targetUrl);
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    swallow: () => {
      swallowed.length = 0;
      swallowing = true;
    },
    pass: () => {
      swallowing = false;
    },
    silenceAt: (marker, options = {}) => {
      if (Buffer.byteLength(marker, "latin1") > markerBytesMax)
        throw new RangeError(`a marker longer than ${markerBytesMax} bytes: ${marker}`);
      swallowed.length = 0;
      markerSeen = false;
      answeredAfterMarker = [];
      armed = { marker, markerPasses: options.markerPasses ?? false };
    },
    silenced: () => markerSeen,
    silencedAnswered: (tag) => Buffer.concat(answeredAfterMarker).includes(commandComplete(tag)),
    hangUpSilenced: () => {
      for (const upstream of silencedUpstreams.keys()) upstream.destroy();
      silencedUpstreams.clear();
    },
    resetSilenced: () => {
      for (const [upstream, downstream] of silencedUpstreams) {
        upstream.resetAndDestroy();
        downstream.resetAndDestroy();
      }
      silencedUpstreams.clear();
    },
    swallowedFromPool: () => Buffer.concat(swallowed).toString("latin1"),
    refuseNew: (on) => {
      refusing = on;
    },
    resetAll: () => {
      silencedUpstreams.clear();
      for (const socket of sockets) socket.resetAndDestroy();
    },
    connectionsMade: () => connections,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The backend's CommandComplete message for `tag`, as sent: 'C', its length (itself included), the tag, a NUL. */
function commandComplete(tag: string): Buffer {
  const text = Buffer.from(`${tag}\0`, "latin1");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(4 + text.length);
  return Buffer.concat([Buffer.from("C", "latin1"), length, text]);
}
