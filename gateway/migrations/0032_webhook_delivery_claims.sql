-- Each claim of a delivery is numbered (claims), and an attempt records its outcome only under the claim it was
-- sent under: an attempt that outlived its claim (another pass took the delivery and recorded since) is kept in the
-- log but changes nothing of the delivery. A redelivery asked while an attempt is in flight (redeliver) makes that
-- attempt leave the delivery pending and due, so it is sent again once the attempt ends. Both columns have constant
-- defaults: added without rewriting the table.
ALTER TABLE webhook_deliveries ADD COLUMN claims integer NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN redeliver boolean NOT NULL DEFAULT false;
