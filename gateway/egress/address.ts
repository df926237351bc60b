// Whether an IP address is one the gateway may send a tenant's request to: a public unicast address, nothing
// else. The ranges come from ipaddr.js (RFC 6890's special-purpose registries); what ipaddr.js calls "unicast" in
// IPv6 is held further to global unicast (2000::/3), and the forms that carry an IPv4 address inside (NAT64, 6to4)
// are judged by that address. IPv4-mapped and -compatible IPv6 are refused whatever they carry: a client that
// writes ::ffff:a.b.c.d means a.b.c.d and can write it so.
import ipaddr from "ipaddr.js";

/** Why an address is not public: its special-purpose range (ipaddr.js's names) or a form refused as such. */
export type AddressRange =
  | "unspecified"
  | "broadcast"
  | "multicast"
  | "linkLocal"
  | "loopback"
  | "carrierGradeNat"
  | "private"
  | "reserved"
  | "uniqueLocal"
  | "ipv4Mapped"
  | "ipv4Compatible"
  | "not_global_unicast"
  | (string & {});

export type AddressVerdict =
  | { readonly public: true }
  | { readonly public: false; readonly range: AddressRange }
  | { readonly public: false; readonly range: "not_an_address" };

/** A public unicast address → public; anything else (loopback, private, metadata's link-local, …) → its range. */
export function classifyAddress(text: string): AddressVerdict {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  // Only the canonical forms: an address spelled 0x7f.1 or 127.1 never reaches here from a URL (WHATWG URL
  // rewrites it), and from DNS it is always dotted or colon notation.
  if (!ipaddr.IPv4.isValidFourPartDecimal(bare) && !ipaddr.IPv6.isValid(bare))
    return { public: false, range: "not_an_address" };
  const address = ipaddr.parse(bare);
  if (address.kind() === "ipv4") return classifyIpv4(address as ipaddr.IPv4);
  return classifyIpv6(address as ipaddr.IPv6);
}

function classifyIpv4(address: ipaddr.IPv4): AddressVerdict {
  const range = address.range();
  return range === "unicast" ? { public: true } : { public: false, range };
}

function classifyIpv6(address: ipaddr.IPv6): AddressVerdict {
  const range = address.range();
  if (range === "ipv4Mapped" || range === "rfc6145") return { public: false, range: "ipv4Mapped" };
  const parts = address.parts;
  // ::a.b.c.d (IPv4-compatible, deprecated): ipaddr.js calls it unicast; ::, ::1 have their own ranges above.
  if (range === "unicast" && parts.slice(0, 6).every((part) => part === 0))
    return { public: false, range: "ipv4Compatible" };
  if (range === "rfc6052") {
    // 64:ff9b::/96 carries the IPv4 address in its last 32 bits; the local-use 64:ff9b:1::/48 is not public.
    const wellKnown = parts[0] === 0x64 && parts[1] === 0xff9b && parts.slice(2, 6).every((p) => p === 0);
    return wellKnown ? classifyIpv4(ipv4Of(parts[6] ?? 0, parts[7] ?? 0)) : { public: false, range };
  }
  // 2002:AABB:CCDD::/48 is the 6to4 prefix of AA.BB.CC.DD.
  if (range === "6to4") return classifyIpv4(ipv4Of(parts[1] ?? 0, parts[2] ?? 0));
  if (range !== "unicast") return { public: false, range };
  // 2000::/3 is the only IPv6 space allocated for global unicast.
  if (((parts[0] ?? 0) & 0xe000) !== 0x2000) return { public: false, range: "not_global_unicast" };
  return { public: true };
}

function ipv4Of(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}
