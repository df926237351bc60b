-- How many times reconciliation submitted a `submitted` authorization again, alone, after a transaction of ours was
-- mined without spending it while its window was still open (out of gas, a batch reverted whole: x402/reconcile.ts
-- resubmitted). Each resubmission is its own send (the journal's key names the count), never the reverted one
-- broadcast again, and the count bounds them.
ALTER TABLE x402_authorizations ADD COLUMN resubmits smallint NOT NULL DEFAULT 0;
