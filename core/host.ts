// Host names and host:port pairs written in the environment (HOST, LND_SOCKET), checked at start. Unchecked, a typo
// surfaced only once everything else had started: as getaddrinfo's ENOTFOUND from listen, or as LND never answering
// a socket whose port was 99999. Here it is refused with the variable's name before anything starts.
import { isIP } from "node:net";
import { z } from "zod";

/**
 * One DNS label: letters, digits, inner hyphens, 1 to 63 characters (RFC 1123), and underscores, which RFC 1123 does
 * not allow but resolvers do (a Docker Compose service `lnd_alice`): the check is for typos, not for the RFC.
 */
const label = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** An IP address (v4 or v6, without brackets) or a DNS name of labels, at most 253 characters (a final dot allowed). */
export function isHostName(text: string): boolean {
  if (isIP(text) !== 0) return true;
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  return name.length > 0 && name.length <= 253 && name.split(".").every((part) => label.test(part));
}

/** `host:port` (an IPv6 address in brackets, `[::1]:10009`) with a port from 1 to 65535; null when it is not one. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  if (match === null) return null;
  const bracketed = match[1];
  const host = bracketed ?? match[2] ?? "";
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return null;
  if (bracketed !== undefined ? isIP(bracketed) !== 6 : !isHostName(host)) return null;
  return { host, port };
}

/** HOST: an address or name to listen on. */
export const hostName = z.string().refine(isHostName, { error: "an IP address or a host name" });

/** A `host:port` to connect to. */
export const hostPort = z
  .string()
  .refine((text) => parseHostPort(text) !== null, { error: "host:port, with a port from 1 to 65535" });
