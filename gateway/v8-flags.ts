// V8 settings for the gateway's own process, imported first by its entry (main.ts) so that they hold before the
// gateway allocates anything. Not for a library user's process: createApp leaves V8 as it finds it.
//
// Allocation-site pretenuring off. V8 counts, at each scavenge, how many objects of each allocation site survived,
// and once a site's survival rate passes its threshold it allocates that site's objects in the old generation from
// then on. A burst of payments has every request's objects alive at the scavenge that meets it, so request-scoped
// sites can be tenured by the first loaded scavenge and stay so. What the measurements fit: those sites' objects,
// dead a few milliseconds later, sit in the old generation pointing at young ones (headers, bodies, promises),
// which every scavenge must keep and promote, and those promote the next. Issue #19's HTTP bench (internal-postgres,
// 224 clients, alternating runs): with pretenuring, 3 runs of 5 promoted 15–21 % of what was allocated (7–10 MB a
// scavenge), at 7,966–8,185 payments/s and 108–109 µs of gateway CPU a payment; without it, 5 of 5 promoted
// 3.4–3.9 %, at 9,280–9,702/s and 83–89 µs. The runs pretenuring left alone read the same as those without it
// (8,946 and 9,973/s). PGlite's path was seldom affected (1 run of 11).
import v8 from "node:v8";

v8.setFlagsFromString("--no-allocation-site-pretenuring");
