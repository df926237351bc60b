-- Up to when each rail knows the fate of every invoice it made (the Lightning rail's invoicesKnownBeforeMs): each of
-- `rail`'s invoices that expired before `expired_before` was paid and its payment delivered, or is known never to be
-- paid. Written by the process that follows the rail's provider (one LND per gateway process, gateway/app/rails.ts)
-- and read by every process's prune of unpaid L402 challenges (gateway/l402/tokens.ts), which deletes none that
-- expired later: LND settles an invoice up to its expiry, and one paid while the gateway could not hear of it comes
-- late, to an invoice that must still be there. Only ever moved forward.
CREATE TABLE rail_invoices_known (
  rail text PRIMARY KEY,
  expired_before timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
