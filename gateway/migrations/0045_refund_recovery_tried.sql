-- When a recovery pass last looked at a pending refund it could not end (its rail away, its provider's answer not in
-- yet): the next pass takes those it has not looked at first, so that refunds no pass can end never hold back the
-- ones behind them. Apart from updated_at, which says when the refund itself last changed.
ALTER TABLE refunds ADD COLUMN recovery_tried_at timestamptz;
