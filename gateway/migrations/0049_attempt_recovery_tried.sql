-- When a recovery pass last looked at an open attempt it could not end (a Lightning payment held by its receiver, a
-- transaction not mined yet): the next pass takes those it has not looked at first. Listed by age alone, the oldest
-- open attempts — a thousand payments to hold invoices, each asked about for 15 s — filled every pass, and no attempt
-- or stranded payment behind them, any tenant's, was recovered. Apart from updated_at, which says when the attempt
-- itself last changed (and when it counts as quiet).
ALTER TABLE attempts ADD COLUMN recovery_tried_at timestamptz;
