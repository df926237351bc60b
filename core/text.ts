// Text from outside the gateway (a rail's failure message: LND's, a chain's, Stripe's, a Lightning Address server's
// `reason`) as PostgreSQL can store it. The API refuses such text at its door (gateway/http/text-safety.ts); what a
// rail says comes in another way.

const nul = String.fromCharCode(0);

/**
 * The text with each NUL and each unpaired UTF-16 surrogate made U+FFFD: text columns refuse the NUL byte (and a
 * whole statement with it), jsonb the \u0000 escape and an unpaired surrogate's.
 */
export function storableText(text: string): string {
  const wellFormed = text.toWellFormed();
  return wellFormed.includes(nul) ? wellFormed.replaceAll(nul, "\uFFFD") : wellFormed;
}
