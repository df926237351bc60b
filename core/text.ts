// What PostgreSQL can store as text: no NUL character (text refuses the byte, jsonb the \u0000 escape) and no unpaired
// UTF-16 surrogate (jsonb refuses its escape; text takes the UTF-8 encoder's replacement character instead). The API
// refuses other text at its door (gateway/http/text-safety.ts, with isStorableText); text from outside the gateway
// that comes in another way (a rail's failure message: LND's, a chain's, Stripe's, a Lightning Address server's
// `reason`) is made storable (storableText).

const nul = String.fromCharCode(0);

/** Whether PostgreSQL can store this text as it is (text and jsonb): no NUL, no unpaired surrogate. */
export function isStorableText(text: string): boolean {
  return text.isWellFormed() && !text.includes(nul);
}

/**
 * The text with each NUL and each unpaired UTF-16 surrogate made U+FFFD: text columns refuse the NUL byte (and a
 * whole statement with it), jsonb the \u0000 escape and an unpaired surrogate's.
 */
export function storableText(text: string): string {
  const wellFormed = text.toWellFormed();
  return wellFormed.includes(nul) ? wellFormed.replaceAll(nul, "\uFFFD") : wellFormed;
}

/**
 * The longest start of `text` whose UTF-8 encoding fits in `bytesMax` bytes, cut between code points (never inside
 * one, never between a surrogate pair's halves).
 */
export function utf8Prefix(text: string, bytesMax: number): string {
  if (Buffer.byteLength(text) <= bytesMax) return text;
  let bytes = 0;
  let end = 0;
  for (const codePoint of text) {
    const size = Buffer.byteLength(codePoint);
    if (bytes + size > bytesMax) break;
    bytes += size;
    end += codePoint.length;
  }
  return text.slice(0, end);
}
