-- A paid x402 request the paywall answered 402 because its payment's settlement was still in flight (its transaction
-- not mined in time): the same payment, sent again once its transaction is mined, is served once (x402/scheme.ts).
ALTER TABLE x402_authorizations ADD COLUMN owed_service boolean NOT NULL DEFAULT false;
