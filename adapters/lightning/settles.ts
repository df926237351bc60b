// Payouts' outcomes from the HTLCs LND settles. LND tells this process a payout's preimage twice: on its HTLC event
// stream (SubscribeHtlcEvents) as soon as the payee's side has settled the HTLC, and on the payment's own stream
// (SendPaymentV2) once LND has also recorded the payment as succeeded in its database. On the regtest network the
// second came 1.1 ms after the first (median of 40 lone payments; 0.4–6 ms), time every payout waited for nothing:
// the preimage is the proof of payment either way, and an HTLC once settled is not taken back.
//
// So a payout's outcome is taken from its HTLC's settle when the settle is certainly this attempt's and its fee is
// known:
// - LND took this process's send (Tracker.acknowledged: its payment stream's first update came), so LND holds no
//   other payment of the hash — one payment per hash — and an HTLC of the hash it settles is this payment's;
// - the payment has one HTLC in flight as LND's last update listed it (max_parts 1: the next is sent only once the
//   last failed), whose route gives the fee paid, and which carries the attempt's amount plus that fee.
// Otherwise the payment's stream decides, as before (after a restart or a disconnect too: forgetSend). When the
// outcome came from a settle, the payment stream's SUCCEEDED that follows is only compared with it: another preimage
// or fee is logged as an error (with one HTLC, LND's fee is that HTLC's route's). The stream is opened when LND
// answers (the monitor's tick) and again at the next tick after it breaks (it needs offchain:read, as following a
// payment does).
import { createHash } from "node:crypto";
import { lndErrorText } from "./failures.ts";
import { type ConfirmedPayment, onConfirmed } from "./send.ts";
import type { HtlcEventStream, LightningRailState } from "./state.ts";

/** routerrpc's HtlcEvent, as far as read here (the gRPC client gives the oneof's name in `event`). */
type HtlcEvent = {
  event_type?: string;
  event?: string;
  settle_event?: { preimage?: Uint8Array };
};

const preimageBytes = 32;

/** Opens LND's HTLC event stream, unless it is open or the rail is stopped. */
export function resubscribeHtlcs(s: LightningRailState): void {
  if (!s.running || s.htlcSubscription !== null) return;
  let stream: HtlcEventStream;
  try {
    stream = s.lnd.router.subscribeHtlcEvents({}) as HtlcEventStream;
  } catch (error) {
    s.logger.warn({ error: lndErrorText(error) }, "LND's HTLC events could not be asked for");
    return;
  }
  s.htlcSubscription = stream;
  // Listened to for good: a stream cancelled or left still says its end, which then concerns nobody.
  stream.on("data", (event: HtlcEvent) => {
    if (s.htlcSubscription !== stream) return;
    // LND's first event says the stream is registered: settles from then on come.
    if (event.event === "subscribed_event") s.health = { ...s.health, htlcSubscription: true };
    else onHtlcEvent(s, event);
  });
  // Broken: the monitor's next tick opens another; meanwhile outcomes come from the payments' streams.
  stream.on("error", (error: unknown) => {
    if (s.htlcSubscription !== stream) return;
    s.htlcSubscription = null;
    s.health = { ...s.health, htlcSubscription: false };
    s.logger.info({ error: lndErrorText(error) }, "LND's HTLC event stream broke");
  });
}

/** Closes the HTLC event stream (a disconnect, the rail stopping). */
export function unsubscribeHtlcs(s: LightningRailState): void {
  const stream = s.htlcSubscription;
  if (stream === null) return;
  s.htlcSubscription = null;
  s.health = { ...s.health, htlcSubscription: false };
  stream.cancel();
}

function onHtlcEvent(s: LightningRailState, event: HtlcEvent): void {
  if (event.event_type !== "SEND" || event.event !== "settle_event") return;
  const preimage = event.settle_event?.preimage;
  if (preimage === undefined || preimage.length !== preimageBytes) return;
  const paymentHash = createHash("sha256").update(preimage).digest("hex");
  const attemptId = s.attemptByHash.get(paymentHash);
  const tracker = attemptId === undefined ? undefined : s.trackers.get(attemptId);
  if (tracker === undefined || tracker.attempt.outcome !== null || !tracker.acknowledged) return;
  const { htlc } = tracker;
  if (
    htlc === null ||
    htlc.feeMsat > tracker.feeMaxMsat ||
    htlc.amountMsat - htlc.feeMsat !== tracker.attempt.amountMsat
  )
    return;
  const secret = Buffer.from(preimage).toString("hex");
  const stream = tracker.subscription;
  s.health = { ...s.health, htlcSettles: s.health.htlcSettles + 1 };
  onConfirmed(s, tracker, { secret, fee_mtokens: htlc.feeMsat.toString() });
  // The payment's stream, which the outcome left, still says LND's record: it must say the same.
  stream?.once("confirmed", (payment: ConfirmedPayment) => {
    if (payment.secret === secret && payment.fee_mtokens === htlc.feeMsat.toString()) return;
    s.logger.error(
      {
        attemptId: tracker.attempt.attemptId,
        paymentHash,
        booked: { preimage: secret, feeMsat: htlc.feeMsat.toString() },
        lnd: { preimage: payment.secret, feeMsat: payment.fee_mtokens },
      },
      "LND recorded this payout otherwise than its HTLC's settle, from which its outcome was booked",
    );
  });
  stream?.once("failed", () =>
    s.logger.error(
      { attemptId: tracker.attempt.attemptId, paymentHash },
      "LND recorded as failed a payout whose HTLC it settled, from which its outcome was booked",
    ),
  );
}
