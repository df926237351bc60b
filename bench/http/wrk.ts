// wrk (the C load tool, Debian's package) as the HTTP bench's load: one thread, a closed loop of `connections`
// keep-alive connections, each request built by a Lua script. It costs a request about a third of the CPU autocannon
// does (21 against 62–70 µs on a 2-core host, 96 clients, the same payments), and on two cores every microsecond the
// load tool spends is taken from the gateway or PostgreSQL: the figures read with it are nearer what the gateway
// does when its load comes from other machines.
//
// A load is given as Lua source defining `make()`, which answers a payment request's Authorization header and JSON
// body; the script around it adds the other headers, an Idempotency-Key of its own to each request, paces the
// requests when a rate is asked for, and prints the summary as one JSON line.
import { execFileSync, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { waitedChildrenCpuSeconds } from "./proc.ts";

export type WrkReading = {
  /** Every response read, whatever its status. */
  responses: number;
  /** Responses with a status of 400 or more (wrk counts 3xx as answered; the gateway sends none). */
  non2xx: number;
  /** Connect, read and write errors, and timeouts. */
  errors: number;
  durationS: number;
  p50Ms: number;
  p99Ms: number;
  /** wrk's own CPU seconds (user + system). */
  cpuS: number;
};

/** A Lua string literal holding `text` exactly: every byte but printable ASCII escaped as \ddd, three digits always. */
export function luaString(text: string): string {
  let out = '"';
  for (const byte of Buffer.from(text, "utf8")) {
    if (byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c) out += String.fromCharCode(byte);
    else out += `\\${String(byte).padStart(3, "0")}`;
  }
  return `${out}"`;
}

let wrkChecked = false;

/** Installs wrk from Debian's packages when the machine lacks it (the bench runs as root, like CI). */
export function ensureWrk(): void {
  if (wrkChecked) return;
  try {
    execFileSync("wrk", ["--version"], { stdio: "ignore" });
  } catch (error) {
    // `wrk --version` prints its usage and exits 1: it ran.
    if ((error as { status?: number }).status !== 1) {
      console.log("bench: installing wrk from Debian packages");
      const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
      execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
      execFileSync("apt-get", ["install", "-y", "-qq", "wrk"], { stdio: "inherit", env });
    }
  }
  wrkChecked = true;
}

let runs = 0;

export async function runWrk(options: {
  url: string;
  connections: number;
  seconds: number;
  /** Lua source defining `make()`. */
  load: string;
  /** Keys start with it: unique to the run. */
  keyPrefix: string;
  /** Requests a second across all connections (absent: as fast as the answers come). */
  ratePerS?: number;
}): Promise<WrkReading> {
  ensureWrk();
  runs += 1;
  const script = path.join(tmpdir(), `switchyard-wrk-${process.pid}-${runs}.lua`);
  const pacing =
    options.ratePerS === undefined
      ? ""
      : `
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } sy_timespec; int clock_gettime(int, sy_timespec *); ]]
local now = ffi.new("sy_timespec")
local function now_ms() ffi.C.clock_gettime(1, now); return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6 end
local interval_ms = ${1000 / options.ratePerS}
local slot_ms = 0
-- One schedule for the thread's connections: each request takes the next slot, none earlier than now.
function delay()
  local t = now_ms()
  if slot_ms < t then slot_ms = t end
  local wait = slot_ms - t
  slot_ms = slot_ms + interval_ms
  return math.floor(wait)
end
`;
  writeFileSync(
    script,
    `${options.load}
local prefix = ${luaString(`${options.keyPrefix}-${runs}-`)}
local counter = 0
function request()
  counter = counter + 1
  local authorization, body = make()
  local headers = { ["authorization"] = authorization, ["content-type"] = "application/json", ["idempotency-key"] = prefix .. counter }
  return wrk.format("POST", nil, headers, body)
end
${pacing}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nWRK_RESULT {"responses":%d,"status":%d,"errors":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
`,
  );
  const cpuBefore = waitedChildrenCpuSeconds();
  try {
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(
        "wrk",
        [
          "-t1",
          `-c${options.connections}`,
          `-d${options.seconds}s`,
          "--timeout",
          "10s",
          "-s",
          script,
          `${options.url}/v1/payments`,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let text = "";
      child.stdout.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
      });
      child.stderr.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
      });
      child.once("error", reject);
      child.once("close", (code) =>
        code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}:\n${text}`)),
      );
    });
    const line = /WRK_RESULT (\{.*\})/.exec(output)?.[1];
    if (line === undefined) throw new Error(`wrk printed no result:\n${output}`);
    const r = JSON.parse(line) as Record<string, number>;
    return {
      responses: r.responses!,
      non2xx: r.status!,
      errors: r.errors!,
      durationS: r.duration_us! / 1e6,
      p50Ms: r.p50_us! / 1000,
      p99Ms: r.p99_us! / 1000,
      cpuS: waitedChildrenCpuSeconds() - cpuBefore,
    };
  } finally {
    rmSync(script, { force: true });
  }
}
