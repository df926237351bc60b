// CPU time from /proc, as the HTTP bench counts it: the gateway's, PostgreSQL's processes', a load tool run as a
// child of the bench (wrk), and the whole host's (how much of it stayed idle).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export const clockTicksPerS =
  Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/**
 * The fields of /proc/<pid>/stat after the command's name (so field 3, the state, is at index 0), or null once the
 * process is gone.
 */
function statFields(pid: number | "self"): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) of a process; 0 once it is gone (its time is not counted). */
export function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return fields === null ? 0 : (Number(fields[11]) + Number(fields[12])) / clockTicksPerS; // utime, stime (14, 15)
}

/** The parent of a process, or null once it is gone. */
export function parentOf(pid: number): number | null {
  const fields = statFields(pid);
  return fields === null ? null : Number(fields[1]); // ppid (field 4)
}

/** CPU seconds of this process's children that ended and were waited for. */
export function waitedChildrenCpuSeconds(): number {
  const fields = statFields("self")!;
  return (Number(fields[13]) + Number(fields[14])) / clockTicksPerS; // cutime, cstime (fields 16 and 17)
}

/**
 * The host's CPU time so far, in clock ticks summed over every core: all of it, the idle part (idle, iowait), and the
 * part the hypervisor gave to other guests while this one had work (steal): time the processes waited for, which
 * their own CPU time does not show.
 */
export function hostTicks(): { total: number; idle: number; steal: number } {
  // The first line: "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is inside user).
  const fields = readFileSync("/proc/stat", "utf8")
    .split("\n", 1)[0]!
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number);
  return {
    total: fields.reduce((sum, ticks) => sum + ticks, 0),
    idle: fields[3]! + fields[4]!,
    steal: fields[7]!,
  };
}
