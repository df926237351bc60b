-- The invoices each rail holds set aside: paid at the provider, their settlement refused by the gateway again and
-- again (adapters/lightning/events.ts setAside), one row per rail and reference (the gateway's invoice id the
-- settlement is for). Written with the rail's point (rail_invoices_known, migration 0061) in one statement by the
-- process that follows the rail's provider, the set replaced whole each time (gateway/l402/tokens.ts
-- recordInvoicesKnown): the point moves past these, and the prune of unpaid L402 challenges keeps each invoice listed
-- here, and its token. Before, one such invoice held the point, and with it every unpaid challenge since, for as long
-- as it stayed set aside.
CREATE TABLE rail_invoices_set_aside (
  rail text NOT NULL,
  reference text NOT NULL,
  PRIMARY KEY (rail, reference)
);
