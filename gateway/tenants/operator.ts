// The operator's credential: one per deployment, stored hashed (SHA-256, as API keys), answering only the operator's
// routes (/v1/tenants). Set by OPERATOR_KEY, or made at the first start and shown to the caller once.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { SwitchyardError } from "../../core/index.ts";
import type { Sql } from "../db/index.ts";
import { digestOf } from "./keys.ts";

/** An operator key: op_ and 32 to 200 URL-safe characters (a generated one has 43: 256 random bits). */
export const operatorKeyPattern = /^op_[A-Za-z0-9_-]{32,200}$/;

export type OperatorKeyBootstrap =
  /** Made now, at this first start: the only time the secret exists outside the operator's hands. */
  | { kind: "created"; secret: string; hint: string }
  /** OPERATOR_KEY's, stored (now, or already): the operator holds it. */
  | { kind: "configured"; hint: string }
  /** Made at an earlier start, stored hashed: it cannot be shown again. */
  | { kind: "existing"; hint: string };

/** A configured operator key of the wrong form (the configuration checks it first: a bug). */
export class OperatorKeyError extends SwitchyardError {
  override name = "OperatorKeyError";
}

const hintOf = (secret: string) => `${secret.slice(0, 6)}…${secret.slice(-4)}`;

/**
 * Makes sure the deployment has an operator credential. With `configured` (OPERATOR_KEY) its digest is stored,
 * replacing any other (a generated one, or an earlier OPERATOR_KEY): only the configured key works. Without, the
 * stored one is kept, or — at the first start — one is made, stored and returned once. Two processes starting at
 * once store one credential: the one that lost the race reports `existing`. With `generate: false` (production) none
 * is made: the first start without OPERATOR_KEY throws, since the only way to hand a made one over is the process's
 * output, which production ships to its logs.
 *
 * Call at start, after the migrations: `const operator = await ensureOperatorKey(db, { configured: config.operatorKey })`,
 * and print `operator.secret` when `operator.kind === "created"`.
 */
export async function ensureOperatorKey(
  sql: Sql,
  params: { configured: string | null; generate?: boolean },
): Promise<OperatorKeyBootstrap> {
  if (params.configured !== null) {
    if (!operatorKeyPattern.test(params.configured))
      throw new OperatorKeyError("the operator key must be op_ and 32 to 200 URL-safe characters");
    const hint = hintOf(params.configured);
    await sql.query(
      `INSERT INTO operator_credentials (id, secret_sha256, hint, source) VALUES ('operator', $1, $2, 'configured')
       ON CONFLICT (id) DO UPDATE SET secret_sha256 = EXCLUDED.secret_sha256, hint = EXCLUDED.hint,
         source = 'configured', created_at = now()
       WHERE operator_credentials.secret_sha256 <> EXCLUDED.secret_sha256`,
      [digestOf(params.configured), hint],
    );
    return { kind: "configured", hint };
  }
  if (params.generate === false) {
    const [stored] = await sql.query<{ hint: string }>(
      "SELECT hint FROM operator_credentials WHERE id = 'operator'",
    );
    if (stored !== undefined) return { kind: "existing", hint: stored.hint };
    throw new OperatorKeyError(
      "production makes no operator credential (it would be printed into the logs): set OPERATOR_KEY to op_ and 32 to 200 URL-safe characters, e.g. the output of: node -e \"console.log('op_' + require('crypto').randomBytes(32).toString('base64url'))\"",
    );
  }
  const secret = `op_${randomBytes(32).toString("base64url")}`;
  const inserted = await sql.query(
    `INSERT INTO operator_credentials (id, secret_sha256, hint, source) VALUES ('operator', $1, $2, 'generated')
     ON CONFLICT (id) DO NOTHING RETURNING id`,
    [digestOf(secret), hintOf(secret)],
  );
  if (inserted.length === 1) return { kind: "created", secret, hint: hintOf(secret) };
  const [stored] = await sql.query<{ hint: string }>(
    "SELECT hint FROM operator_credentials WHERE id = 'operator'",
  );
  return { kind: "existing", hint: stored!.hint };
}

/** Whether `secret` is the operator's credential. Asks the database every time (operator requests are rare). */
export async function isOperatorKey(sql: Sql, secret: string): Promise<boolean> {
  if (!operatorKeyPattern.test(secret)) return false;
  const [stored] = await sql.query<{ secret_sha256: Uint8Array }>(
    "SELECT secret_sha256 FROM operator_credentials WHERE id = 'operator'",
  );
  if (stored === undefined) return false;
  return timingSafeEqual(Buffer.from(stored.secret_sha256), digestOf(secret));
}
