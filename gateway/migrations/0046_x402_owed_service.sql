-- A paid x402 request the paywall answered 402 because its payment's settlement was still in flight (its transaction
-- not mined in time): the paywall it is owed at. The same payment, sent again to that paywall once the token says the
-- authorization is spent, is served once (x402/scheme.ts).
ALTER TABLE x402_authorizations ADD COLUMN owed_paywall text;
