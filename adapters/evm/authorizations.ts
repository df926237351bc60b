// A payer's EIP-3009 authorization for an invoice (ReceiveWithAuthorization: only the hot wallet, its `to`, can
// submit it, so nobody can front-run it into another transfer), checked before anything is sent — the signature
// (viem verifyTypedData), `to` = the hot wallet, `value` = the invoice's amount, the invoice's nonce, the validity
// window, the nonce unused, the invoice not paid already — then simulated and submitted from the hot wallet
// through the send journal (once per signer and nonce). It is credited by the deposit watcher once final.
// Two ways in: the Rail contract's submitSignedPayment (the API's authenticated route) and the rail's own route for
// wallets, without an API key, where the invoice's client secret (from its instructions) names the invoice.
// x402's `exact` scheme signs TransferWithAuthorization instead, with a nonce of the payer's choosing: given as
// `method: "transfer"` (only through submitSignedPayment, for an invoice the x402 settler made for that payment),
// the same checks run over that typed data, the invoice takes the payer's nonce (so the watcher credits its
// AuthorizationUsed log), and the gateway submits transferWithAuthorization to the hot wallet.
import {
  type Address,
  BaseError,
  encodeFunctionData,
  getAddress,
  type Hex,
  isAddress,
  isAddressEqual,
  isHex,
  parseSignature,
  verifyTypedData,
} from "viem";
import {
  isUniqueViolation,
  type RailRoute,
  type RailRouteReply,
  railUnreachableRetryAfterSeconds,
  type SignedPayment,
  type SignedPaymentOutcome,
  type SignedPaymentRefusal,
  transferSendKeysSql,
} from "../../core/index.ts";
import { testUsdAbi } from "./abi.generated.ts";
import {
  authorizationNonceForInvoice,
  authorizationPath,
  type DepositRow,
  type DepositState,
  depositByClientSecret,
  depositByReference,
  tokenDomainOf,
} from "./deposits.ts";
import { nodeUnreachable, viemDetails } from "./errors.ts";
import type { EvmRailState } from "./rail-state.ts";
import { revertName } from "./reverts.ts";
import { chainPartOfKey, sendOnce } from "./send-journal.ts";
import { receiveWithAuthorizationTypedData, transferWithAuthorizationTypedData } from "./typed-data.ts";

/** The fields a signed authorization comes in (strings: decimal numbers, 0x hex). */
export const authorizationFields = [
  "from",
  "value",
  "valid_after",
  "valid_before",
  "nonce",
  "signature",
] as const;

/** An authorization must stay valid at least this long after it is checked: time to be mined. */
const authorizationValidityMarginS = 30n;
/** The same margin for x402's TransferWithAuthorization: the x402 reference's 6 s (clients sign for maxTimeoutSeconds). */
const transferValidityMarginS = 6n;

/** Which EIP-3009 call the payer signed: ReceiveWithAuthorization (invoices) or TransferWithAuthorization (x402). */
export type AuthorizationMethod = "receive" | "transfer";
/** The wallet route's body: a client secret and six short fields. */
const authorizationBodyBytesMax = 4_096;

type Refused = Extract<SignedPaymentOutcome, { status: "refused" }>;
const refused = (code: SignedPaymentRefusal, message: string): Refused => ({
  status: "refused",
  code,
  message,
});

type Authorization = {
  method: AuthorizationMethod;
  from: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
  signature: Hex;
};

const uintPattern = /^[0-9]{1,78}$/;

function parseAuthorization(fields: Readonly<Record<string, string>>): Authorization | Refused {
  const { from, value, valid_after, valid_before, nonce, signature, method = "receive" } = fields;
  if (method !== "receive" && method !== "transfer")
    return refused("authorization_mismatch", "method is receive or transfer");
  if (from === undefined || !isAddress(from, { strict: false }))
    return refused("authorization_mismatch", "from is not an address");
  for (const [name, text] of [
    ["value", value],
    ["valid_after", valid_after],
    ["valid_before", valid_before],
  ] as const)
    if (text === undefined || !uintPattern.test(text))
      return refused("authorization_mismatch", `${name} is not a whole number`);
  if (nonce === undefined || !isHex(nonce) || nonce.length !== 66)
    return refused("authorization_mismatch", "nonce is not 32 bytes of hex");
  if (signature === undefined || !isHex(signature) || signature.length !== 132)
    return refused("signature_invalid", "signature is not 65 bytes of hex");
  return {
    method,
    from: getAddress(from),
    value: BigInt(value!),
    validAfter: BigInt(valid_after!),
    validBefore: BigInt(valid_before!),
    // One authorization, one spelling: the nonce names its send (a key), and bytes32 takes either case alike.
    nonce: nonce.toLowerCase() as Hex,
    signature,
  };
}

/** Checks what can be checked without the chain: the terms against the invoice's, the time, the signature. */
async function checkTerms(
  state: EvmRailState,
  deposits: DepositState,
  row: DepositRow,
  auth: Authorization,
): Promise<Refused | null> {
  const nowS = BigInt(Math.floor(state.nowMs() / 1000));
  const expiresS = BigInt(Math.floor(row.expires_at.getTime() / 1000));
  if (nowS >= expiresS) return refused("authorization_expired", "the invoice has expired");
  if (auth.value !== row.amount)
    return refused("authorization_mismatch", `value must be the invoice's amount, ${row.amount}`);
  const transfer = auth.method === "transfer";
  // A transfer's nonce is the payer's (x402); a receive's is the invoice's own, bound to it.
  if (!transfer && auth.nonce.toLowerCase() !== row.auth_nonce.toLowerCase())
    return refused("authorization_mismatch", "nonce must be the invoice's authorization_nonce");
  if (auth.validAfter > nowS) return refused("authorization_mismatch", "valid_after is in the future");
  if (!transfer && auth.validBefore > expiresS)
    return refused("authorization_mismatch", "valid_before must not be after the invoice's expiry");
  if (auth.validBefore < nowS + (transfer ? transferValidityMarginS : authorizationValidityMarginS))
    return refused("authorization_expired", "the authorization expires too soon to be mined");
  const read = await readOrUnreachable(state, () => tokenDomainOf(state, deposits));
  if ("status" in read) return read;
  const domain = read.value;
  const message = {
    from: auth.from,
    to: state.account.address,
    value: auth.value,
    validAfter: auth.validAfter,
    validBefore: auth.validBefore,
    nonce: auth.nonce,
  };
  // Recovery throws on 65 bytes that are no signature (a v other than 27/28 or 0/1, an r or s out of range): that is
  // a bad signature too, not a 500.
  const valid = await (transfer
    ? verifyTypedData({
        address: auth.from,
        ...transferWithAuthorizationTypedData(domain, message),
        signature: auth.signature,
      })
    : verifyTypedData({
        address: auth.from,
        ...receiveWithAuthorizationTypedData(domain, message),
        signature: auth.signature,
      })
  ).catch(() => false);
  if (!valid) return refused("signature_invalid", "the signature is not the payer's over these terms");
  return null;
}

/**
 * What the watcher has read of transfers of the token (chain $1, token $2) to a deposit address ($3), confirmed or
 * not: answered from an index of the address (migration 0012), whatever the number of events stored.
 */
export const paidToAddressQuery = `SELECT sum((args->>'value')::numeric)::text AS total FROM evm_watch_events
  WHERE chain_id = $1 AND contract = $2 AND event_name = 'Transfer' AND status <> 'removed'
    AND lower(args->>'to') COLLATE "C" = $3`;

/** Checks the chain: the nonce unused, the invoice not already paid to its address, the call simulated. */
async function checkChain(
  state: EvmRailState,
  row: DepositRow,
  auth: Authorization,
): Promise<Refused | null> {
  const { publicClient, token, db } = state.params;
  // Before, the node out of reach here answered 500: the payer's to send again, not the gateway's failure.
  const used = await readOrUnreachable(state, () =>
    publicClient.readContract({
      address: token.address,
      abi: testUsdAbi,
      functionName: "authorizationState",
      args: [auth.from, auth.nonce],
    }),
  );
  if ("status" in used) return used;
  if (used.value) return refused("authorization_used", "this authorization's nonce is already used");
  if (row.deposit_address !== null) {
    // Transfers to the address the watcher has read (confirmed or not): paying again by authorization would pay twice.
    const [paid] = await db.query<{ total: string | null }>(paidToAddressQuery, [
      state.chainId,
      token.address.toLowerCase(),
      row.deposit_address,
    ]);
    if (paid?.total != null && BigInt(paid.total) >= row.amount)
      return refused("invoice_not_payable", "the invoice was paid to its deposit address");
  }
  try {
    await publicClient.simulateContract({
      account: state.account,
      address: token.address,
      abi: testUsdAbi,
      functionName: functionOf(auth),
      args: receiveArgs(state, auth),
    });
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    const revert = revertName(error);
    switch (revert) {
      case "ERC3009UsedAuthorization":
        return refused("authorization_used", "this authorization's nonce is already used");
      case "ERC3009InvalidSignature":
        return refused("signature_invalid", "the token refused the signature");
      case "ERC3009InvalidAuthorizationTime":
        return refused("authorization_expired", "the authorization is not valid now");
      case "ERC20InsufficientBalance":
        return refused("payer_insufficient_funds", `${auth.from} holds less than ${auth.value}`);
      default:
        if (nodeUnreachable(error)) return unreachable(state, error);
        state.logger.warn({ error: viemDetails(error) }, `simulating ${functionOf(auth)} failed`);
        return refused("rail_unavailable", `the chain would not take it: ${revert ?? error.shortMessage}`);
    }
  }
  return null;
}

/** A read the checks need: its answer, or the refusal of a node out of reach (any other error is thrown). */
async function readOrUnreachable<T>(
  state: EvmRailState,
  read: () => Promise<T>,
): Promise<{ readonly value: T } | Refused> {
  try {
    return { value: await read() };
  } catch (error) {
    if (nodeUnreachable(error)) return unreachable(state, error);
    throw error;
  }
}

/** The chain's node did not answer a read the checks need: nothing was sent, and the payer may send it again. */
function unreachable(state: EvmRailState, error: unknown): Refused {
  state.logger.warn(
    { error: viemDetails(error) },
    "checking an authorization: the chain's node is out of reach",
  );
  return refused(
    "rail_unreachable",
    "the chain's node could not be reached; nothing was sent: send it again later",
  );
}

const functionOf = (auth: Authorization) =>
  auth.method === "transfer" ? "transferWithAuthorization" : "receiveWithAuthorization";

/** The call's arguments (the same for both: from, to = the hot wallet, value, window, nonce, v, r, s). */
function receiveArgs(state: EvmRailState, auth: Authorization) {
  const { v, yParity, r, s } = parseSignature(auth.signature);
  const vByte = v === undefined ? yParity + 27 : Number(v); // the token takes v as 27 or 28
  return [
    auth.from,
    state.account.address,
    auth.value,
    auth.validAfter,
    auth.validBefore,
    auth.nonce,
    vByte,
    r,
    s,
  ] as const;
}

/**
 * The `to` an invoice bound now records (evm migration 0023): the hot wallet, which checkTerms held the signature to.
 * The watcher and x402's reconciliation read the binding by it after the operator rotated the key.
 */
const hotWalletOf = (state: EvmRailState) => state.account.address.toLowerCase();

/**
 * The refusals of the checks after which the authorization can never pay the invoice: its nonce used, its signature
 * refused by the token, the invoice paid to its address. Any other (the payer short of funds now, the node out of
 * reach, the call refused for another reason) leaves it valid for whoever holds it.
 */
const neverPays: ReadonlySet<SignedPaymentRefusal> = new Set([
  "authorization_used",
  "signature_invalid",
  "invoice_not_payable",
]);

/**
 * The latest validBefore an invoice's watch is raised to (9999-12-31T23:59:59Z): a uint256 past it would overflow
 * PostgreSQL's timestamps, and an authorization valid so long is watched as long as the gateway keeps dates.
 */
const watchedValidBeforeMaxS = 253_402_300_799n;

/**
 * Binds invoice `row` to a transfer authorization's payer and nonce, which the watcher follows (deposit-source.ts):
 * null when the invoice holds them now, else the refusal (nothing was sent). Only while no other invoice holds them —
 * but one that never sent them (no transaction recorded on it, no send of the authorization in the journal, under its
 * key with the chain id or the one before): a settlement refused before sending keeps its invoice bound (submit), and
 * the same authorization sent again, through a new invoice (x402 gives its claim back, and books one), takes the
 * binding over from it in the same transaction, so that one invoice, never two and never none, holds it whenever the
 * watcher reads its log. The invoice given up takes its own nonce back and stays open, bound to nothing, until it
 * expires. Bound, the invoice is watched at least as long past the authorization's validBefore as past its expiry:
 * whoever holds it may mine it until then, and x402's invoice expires a day after it is booked at most.
 */
async function bindTransfer(
  state: EvmRailState,
  row: DepositRow,
  auth: Authorization,
): Promise<Refused | null> {
  const token = state.params.token.address.toLowerCase();
  const from = auth.from.toLowerCase();
  const nonce = auth.nonce.toLowerCase();
  const validBefore = auth.validBefore < watchedValidBeforeMaxS ? auth.validBefore : watchedValidBeforeMaxS;
  try {
    const bound = await state.params.db.transaction(async (tx) => {
      // The holder's terms must be this authorization's: its value the holder's amount (checkTerms held the holder's
      // authorization to it), its pay-to, token and chain the rail's, one rail a chain (the rows' key). A nonce is the
      // payer's choice: another authorization of the same payer and nonce, for another amount, may be mined instead
      // of this one, and would credit the new invoice what the holder's payer signed for the holder.
      const [unsent] = await tx.query<{ reference: string; deposit_address: string | null }>(
        `SELECT reference, deposit_address FROM evm_deposits
         WHERE chain_id = $1 AND token = $2 AND auth_from = $4 AND auth_nonce = $5 AND reference <> $3
           AND auth_tx_hash IS NULL AND amount = $6
           AND NOT EXISTS (SELECT 1 FROM evm_sends s
                           WHERE s.chain_id = $1 AND s.attempt_id IN (${transferSendKeysSql("$1", "$4", "$5")}))
         FOR UPDATE`,
        [state.chainId, token, row.reference, from, nonce, auth.value],
      );
      // Nor taken from an invoice the watcher has read anything for, whatever became of it: the authorization mined
      // (by someone else: no send of ours), or a transfer to its address. Its credit, or the reversal a reorg makes
      // of it (a node that read the nonce unused, behind on the chain or on a branch without it, let this one through
      // checkChain), goes to the invoice that holds the binding then (deposit-source.ts invoiceOf): taken over, the
      // reversal found the new invoice (not_ours), the first kept its credit, and our send credited the new one too.
      // Each look is answered from an index (migrations 0022 and 0012), whatever the number of events stored: the
      // holder's row is locked meanwhile.
      const [seen] =
        unsent === undefined
          ? []
          : await tx.query<{ seen: boolean }>(
              `SELECT EXISTS (SELECT 1 FROM evm_watch_events
                              WHERE chain_id = $1 AND contract = $2 AND event_name = 'AuthorizationUsed'
                                AND lower(args->>'nonce') COLLATE "C" = $4
                                AND lower(args->>'authorizer') COLLATE "C" = $3)
                   OR EXISTS (SELECT 1 FROM evm_watch_events
                              WHERE chain_id = $1 AND contract = $2 AND event_name = 'Transfer'
                                AND lower(args->>'to') COLLATE "C" = $5) AS seen`,
              [state.chainId, token, from, nonce, unsent.deposit_address],
            );
      if (unsent !== undefined && seen?.seen === false)
        await tx.query(
          `UPDATE evm_deposits SET auth_from = NULL, auth_to = NULL, auth_nonce = $4
           WHERE chain_id = $1 AND token = $2 AND reference = $3 AND auth_tx_hash IS NULL`,
          [
            state.chainId,
            token,
            unsent.reference,
            authorizationNonceForInvoice(state.account.address, unsent.reference),
          ],
        );
      const bound = await tx.query(
        `UPDATE evm_deposits SET auth_from = $4, auth_nonce = $5, auth_to = $7,
           watch_until = greatest(watch_until, to_timestamp($6) + (watch_until - expires_at))
         WHERE chain_id = $1 AND token = $2 AND reference = $3
           AND ((auth_from IS NULL AND NOT EXISTS (
                  SELECT 1 FROM evm_deposits other
                  WHERE other.chain_id = $1 AND other.token = $2 AND other.auth_nonce = $5
                    AND other.auth_from = $4))
             OR (auth_from = $4 AND auth_nonce = $5))
         RETURNING auth_from`,
        [state.chainId, token, row.reference, from, nonce, validBefore, hotWalletOf(state)],
      );
      return bound.length === 1;
    });
    return bound ? null : boundElsewhere();
  } catch (error) {
    // Another invoice took this payer and nonce between the NOT EXISTS and the write (evm_deposits_nonce): nothing
    // was sent, so this is a refusal like a binding refused, not a payment of unknown fate.
    if (isUniqueViolation(error, "evm_deposits_nonce")) return boundElsewhere();
    // Nor is any other failure of the database here: nothing was sent, and the caller hears a refusal (x402 gives its
    // claim back). Thrown, x402 kept its claim as if the authorization might have been sent, which nothing adopts.
    state.logger.error(
      { error, reference: row.reference, from: auth.from },
      "binding an invoice to a transfer authorization failed; nothing was sent",
    );
    return refused(
      "rail_unavailable",
      "the invoice could not be bound to the authorization now; nothing was sent",
    );
  }
}

const boundElsewhere = (): Refused =>
  refused(
    "authorization_used",
    "this invoice has another payer's authorization, or this authorization is bound to another invoice",
  );

/** Checks a payer's authorization for invoice `row` and submits it; a refusal has sent nothing. */
async function submit(
  state: EvmRailState,
  deposits: DepositState,
  row: DepositRow,
  fields: Readonly<Record<string, string>>,
): Promise<SignedPaymentOutcome> {
  const auth = parseAuthorization(fields);
  if ("status" in auth) return auth;
  if (
    fields.to !== undefined &&
    (!isAddress(fields.to, { strict: false }) || !isAddressEqual(fields.to, state.account.address))
  )
    return refused("authorization_mismatch", `to must be the gateway's address ${state.account.address}`);
  const terms = await checkTerms(state, deposits, row, auth);
  if (terms !== null) return terms;
  const chain = await checkChain(state, row, auth);
  if (chain !== null) {
    // Refused here, a transfer authorization (x402) is still the payer's signed transfer to the hot wallet (its
    // signature, terms and window checked above), which whoever holds it (the payer, a relay, the resource server) may
    // submit to the token until its validBefore: the invoice takes its payer and nonce all the same, so that the
    // watcher credits it if it is mined. Before, it was left unbound: mined later by someone else, it paid the hot
    // wallet and credited nothing.
    if (auth.method === "transfer" && !neverPays.has(chain.code)) await bindTransfer(state, row, auth);
    return chain;
  }
  // One signer per invoice: a second payer's authorization (its own nonce space) would pay it twice. A transfer
  // authorization also gives the invoice its payer's nonce (once: no other invoice may hold the same payer and
  // nonce, but one that never sent it, refused before sending, whose binding this one takes over: bindTransfer;
  // another payer's same nonce is another authorization), which the watcher follows.
  if (auth.method === "transfer") {
    const unbound = await bindTransfer(state, row, auth);
    if (unbound !== null) return unbound;
  } else {
    let claimed = false;
    try {
      const bound = await state.params.db.query(
        `UPDATE evm_deposits SET auth_from = $4, auth_to = $5
         WHERE chain_id = $1 AND token = $2 AND reference = $3 AND (auth_from IS NULL OR auth_from = $4)
         RETURNING auth_from`,
        [
          state.chainId,
          state.params.token.address.toLowerCase(),
          row.reference,
          auth.from.toLowerCase(),
          hotWalletOf(state),
        ],
      );
      claimed = bound.length === 1;
    } catch (error) {
      // As bindTransfer's: the index refused the pair, nothing was sent.
      if (!isUniqueViolation(error, "evm_deposits_nonce")) throw error;
    }
    if (!claimed) return boundElsewhere();
  }
  const chainPart = await chainPartOfKey(
    state.journal,
    `${auth.method}-auth:${auth.from.toLowerCase()}:${auth.nonce}`,
  );
  const authKey = `${auth.method}-auth:${chainPart}${auth.from.toLowerCase()}:${auth.nonce}`;
  const sent = await sendOnce(state.journal, authKey, async () => ({
    to: state.params.token.address,
    data: encodeFunctionData({
      abi: testUsdAbi,
      functionName: functionOf(auth),
      args: receiveArgs(state, auth),
    }),
  }));
  if ("status" in sent) {
    state.logger.warn({ reference: row.reference, message: sent.message }, `${functionOf(auth)} not sent`);
    // Nothing was sent here: a receive authorization's invoice gives the payer back — unless another process sent
    // this authorization meanwhile (a send stored under the key: this one's refusal, an estimate reverted, came from
    // that send mined); given back then, its payment was never credited. A transfer's keeps its payer and nonce, as a
    // refusal of the checks does (above): whoever holds it may still submit it, and the same authorization sent again
    // through another invoice takes them over (bindTransfer).
    if (auth.method === "receive")
      await state.params.db.query(
        `UPDATE evm_deposits SET auth_from = $4, auth_nonce = $5, auth_to = $7
        WHERE chain_id = $1 AND token = $2 AND reference = $3 AND auth_tx_hash IS NULL
          AND NOT EXISTS (SELECT 1 FROM evm_sends WHERE attempt_id = $6)`,
        [
          state.chainId,
          state.params.token.address.toLowerCase(),
          row.reference,
          row.auth_from,
          row.auth_nonce,
          authKey,
          row.auth_to,
        ],
      );
    // Nothing was sent: a node that stopped answering since the checks, or the hot wallet's queue full, is for the
    // payer to send it again shortly (503), as the checks' own reads are.
    if (sent.code === "rejected") return refused("authorization_mismatch", sent.message);
    return sent.code === "rail_unavailable"
      ? refused("rail_unreachable", sent.message)
      : refused("rail_unavailable", sent.message);
  }
  // Sent, whether or not the node took it now (not taken, it is broadcast again later, and is submitted all the same).
  // Bound again with it: another process's give-back (its own refusal, the row it read before this bind) may have
  // run between this bind and this send — unless another payer bound the invoice since (its payment is its own), or
  // this payer and nonce went to another invoice: sent all the same, and said at error level for the operator (no
  // pass credits it: the watcher follows the invoice's binding).
  // Its `to` is the wallet that signed the send under the key: a send stored before the key rotated (the payer's same
  // authorization, bound again since to the new wallet) is rebroadcast as it is, and pays the old wallet.
  const sentTo = "coalesce((SELECT nullif(wallet, '') FROM evm_sends WHERE attempt_id = $7), $6)";
  let recorded: unknown[] = [];
  try {
    recorded = await state.params.db.query(
      auth.method === "transfer"
        ? `UPDATE evm_deposits SET auth_tx_hash = $4, auth_from = $5, auth_to = ${sentTo}, auth_nonce = $8
           WHERE chain_id = $1 AND token = $2 AND reference = $3
             AND (auth_from IS NULL OR (auth_from = $5 AND auth_nonce = $8)) RETURNING 1`
        : `UPDATE evm_deposits SET auth_tx_hash = $4, auth_from = $5, auth_to = ${sentTo}
           WHERE chain_id = $1 AND token = $2 AND reference = $3 AND (auth_from IS NULL OR auth_from = $5)
           RETURNING 1`,
      [
        state.chainId,
        state.params.token.address.toLowerCase(),
        row.reference,
        sent.tx_hash,
        auth.from.toLowerCase(),
        hotWalletOf(state),
        authKey,
        ...(auth.method === "transfer" ? [auth.nonce.toLowerCase()] : []),
      ],
    );
  } catch (error) {
    if (!isUniqueViolation(error, "evm_deposits_nonce")) throw error;
  }
  if (recorded.length === 0)
    state.logger.error(
      { reference: row.reference, txHash: sent.tx_hash, from: auth.from },
      "an authorization was sent while its invoice was bound elsewhere since; its payment is not credited: see to it",
    );
  return { status: "submitted", railReference: sent.tx_hash, taken: sent.broadcast === "taken" };
}

/** The Rail contract's submitSignedPayment: the invoice named by its reference (the API checked its tenant). */
export async function submitSignedPayment(
  state: EvmRailState,
  deposits: DepositState,
  payment: SignedPayment,
): Promise<SignedPaymentOutcome> {
  const row = await depositByReference(state, payment.reference);
  if (row === null)
    return refused("invoice_not_payable", `no invoice ${payment.reference} on rail ${state.id}`);
  return submit(state, deposits, row, payment.fields);
}

/** How each refusal answers a wallet on the rail's own route (the API's route maps them the same way). */
export const signedPaymentRefusalStatus: Record<SignedPaymentRefusal, number> = {
  signature_invalid: 400,
  authorization_mismatch: 400,
  authorization_expired: 400,
  authorization_used: 409,
  payer_insufficient_funds: 402,
  invoice_not_payable: 409,
  rail_unavailable: 402,
  rail_unreachable: 503,
};

const errorReply = (status: number, code: string, message: string): RailRouteReply => ({
  status,
  body: { error: { code, message } },
  ...(status === 503 ? { headers: { "retry-after": String(railUnreachableRetryAfterSeconds) } } : {}),
});

/** POST /pay/<rail>/authorizations: a wallet submits the payer's authorization with the invoice's client secret. */
export function authorizationRoute(state: EvmRailState, deposits: DepositState): RailRoute {
  return {
    method: "POST",
    path: authorizationPath(state.id),
    bodyLimitBytes: authorizationBodyBytesMax,
    async handle(request) {
      let body: unknown;
      try {
        body = JSON.parse(request.rawBody.toString("utf8"));
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
        return errorReply(400, "invalid_json", "the body is not JSON");
      }
      if (typeof body !== "object" || body === null || Array.isArray(body))
        return errorReply(400, "invalid_json", "the body is not a JSON object");
      const fields: Record<string, string> = {};
      for (const [key, value] of Object.entries(body)) {
        if (
          key !== "client_secret" &&
          key !== "to" &&
          !(authorizationFields as readonly string[]).includes(key)
        )
          return errorReply(400, "parameter_unknown", `unknown parameter ${key}`);
        if (typeof value !== "string" || value.length > 200)
          return errorReply(400, "parameter_invalid", `${key} must be a string`);
        fields[key] = value;
      }
      const secret = fields.client_secret;
      if (secret === undefined) return errorReply(400, "parameter_missing", "client_secret is required");
      const row = await depositByClientSecret(state, secret);
      if (row === null) return errorReply(404, "invoice_not_found", "no invoice has this client secret");
      const outcome = await submit(state, deposits, row, fields);
      if (outcome.status === "refused")
        return errorReply(signedPaymentRefusalStatus[outcome.code], outcome.code, outcome.message);
      return {
        status: 202,
        body: {
          object: "invoice_authorization",
          invoice: row.reference,
          status: "submitted",
          transaction: outcome.railReference,
        },
      };
    },
  };
}
