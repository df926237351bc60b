-- A kept fee's `revision` counted from 0 for each row: a row forgotten and kept anew (its event told its fee, then
-- another refused) began at 0 again, so a pass's try that read the row before (unparkFee: "… AND revision = r") or an
-- event's lookup that read it (forgetBookedFee) could delete the new row, and its fee (a refund's failure's) was never
-- booked. Revisions now come from one sequence, never given twice: a row kept again or anew takes the next one. The rows
-- kept already keep theirs, the sequence starting past the largest.
CREATE SEQUENCE fiat_parked_fees_revision AS integer OWNED BY fiat_parked_fees.revision;
SELECT setval('fiat_parked_fees_revision', coalesce(max(revision), 0) + 1, false) FROM fiat_parked_fees;
ALTER TABLE fiat_parked_fees ALTER COLUMN revision SET DEFAULT nextval('fiat_parked_fees_revision');
