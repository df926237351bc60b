-- A refusal for load (the hot wallet's queue, or one tenant's share of it, full) says nothing of the node's health:
-- the router's circuit does not count it. Kept with the refusal, so that one answered again (recovery) says so too.
-- Rows written before this column, and by a process that predates it, read as not busy.
ALTER TABLE evm_send_refusals ADD COLUMN busy boolean NOT NULL DEFAULT false;
