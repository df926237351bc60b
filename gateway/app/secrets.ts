// What the configuration holds that no line the gateway writes may carry, and the filter every log line and the
// start-up failure pass through. A hosted JSON-RPC endpoint carries its provider's key in its path
// (…/v2/<key>), and viem's errors name the URL they asked in their message and in an enumerable field: a
// logged error would print it. Redacting at the writer catches every path to it, those not written yet too.
import { type Config, commandFailure } from "./config.ts";

const redacted = "[redacted]";

/** A string to redact, and what stands in its place. */
export type Secret = { readonly text: string; readonly shownAs: string };

const secret = (text: string, shownAs = redacted): Secret => ({ text, shownAs });

const parsed = (raw: string): URL | null => {
  try {
    return new URL(raw);
  } catch {
    return null;
  }
};

/** A URL's password, as written and decoded (a database URL's: its path names a database, not a credential). */
function passwordOf(url: URL): Secret[] {
  if (url.password === "") return [];
  let decoded = url.password;
  try {
    decoded = decodeURIComponent(url.password);
  } catch {}
  return [secret(url.password), secret(decoded)];
}

/**
 * The strings of a URL that may hold a credential: its password, and the URL as written and as parsed, shown as
 * its origin (which host failed is still told), and its path and query alone.
 */
function urlSecrets(raw: string): Secret[] {
  const url = parsed(raw);
  if (url === null) return [secret(raw)];
  const found = passwordOf(url);
  // A bare origin (http://127.0.0.1:8545) holds nothing to hide; a path or a query may.
  const rest = `${url.pathname}${url.search}`;
  if (rest.length > 1 || url.username !== "") {
    const shownAs = `${url.origin}/${redacted}`;
    found.push(secret(raw, shownAs), secret(url.href, shownAs));
    if (rest.length > 1) found.push(secret(rest, `/${redacted}`));
  }
  return found;
}

/** Every secret the configuration holds, longest first (one inside another is redacted whole). */
export function configSecrets(config: Config): Secret[] {
  const found: Secret[] = [];
  for (const { source } of config.evm.chains) {
    if (source.kind === "embedded") continue;
    found.push(...urlSecrets(source.url));
    if (source.hotWalletKey !== null) found.push(secret(source.hotWalletKey));
  }
  if (config.database.kind === "postgres") {
    const url = parsed(config.database.url);
    found.push(...(url === null ? [secret(config.database.url)] : passwordOf(url)));
  }
  if (config.rates.httpUrl !== null) found.push(...urlSecrets(config.rates.httpUrl));
  if (config.operatorKey !== null) found.push(secret(config.operatorKey));
  if (config.fiat.kind === "on")
    found.push(secret(config.fiat.client.apiKey), ...config.fiat.webhook.secrets.map((text) => secret(text)));
  if (config.lightning.kind === "on") found.push(secret(config.lightning.lnd.macaroon));
  return redactable(found);
}

/** `found` as a scrubber takes them: with their JSON-escaped forms, each once, none too short, longest first. */
function redactable(found: Secret[]): Secret[] {
  // As a JSON line writes them too: a password with a quote or a backslash is escaped there.
  for (const { text } of [...found]) {
    const escaped = JSON.stringify(text).slice(1, -1);
    if (escaped !== text) found.push(secret(escaped));
  }
  const seen = new Set<string>();
  return (
    found
      // Too short to be a credential, and would redact ordinary words.
      .filter((entry) => entry.text.length >= 8 && !seen.has(entry.text) && seen.add(entry.text))
      .sort((a, b) => b.text.length - a.text.length)
  );
}

/** Replaces every secret in a text (a log line, an error's printout). */
export function secretScrubber(secrets: readonly Secret[]): (text: string) => string {
  if (secrets.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const { text: hidden, shownAs } of secrets)
      if (out.includes(hidden)) out = out.replaceAll(hidden, shownAs);
    return out;
  };
}

/**
 * The failure of a script that reads EVM_RPC_URL and EVM_HOT_WALLET_KEY alone (scripts/evm-deploy.ts,
 * scripts/price-feed.ts), printed as npm start prints its own (commandFailure) without either: a hosted endpoint's
 * key is in its path, and viem's errors name the URL. Returns the exit code.
 */
export function rpcCommandFailure(
  prefix: string,
  error: unknown,
  env: { EVM_RPC_URL?: string | undefined; EVM_HOT_WALLET_KEY?: string | undefined },
): 1 | 2 {
  const found = [
    ...(env.EVM_RPC_URL === undefined ? [] : urlSecrets(env.EVM_RPC_URL)),
    ...(env.EVM_HOT_WALLET_KEY === undefined ? [] : [secret(env.EVM_HOT_WALLET_KEY)]),
  ];
  return commandFailure(prefix, "failed", error, secretScrubber(redactable(found)));
}

/** The scrubber of `config`'s secrets: what the app's logs and a command's failure pass through. */
export const configScrubber = (config: Config): ((text: string) => string) =>
  secretScrubber(configSecrets(config));
