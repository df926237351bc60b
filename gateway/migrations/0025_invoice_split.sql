-- A paywall's split (issue #23) travels with the invoice its payment is booked as: the shares of each receipt that
-- move from the credited account to the payees' accounts when it is credited. Written once, read back whole: json,
-- [{ "accountId", "basisPoints" }]. NULL (every invoice before this, and every invoice not made by a paywall): none.
ALTER TABLE invoices ADD COLUMN split json;
