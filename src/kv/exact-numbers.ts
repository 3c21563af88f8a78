/**
 * JSON numbers a JavaScript number does not hold exactly. The demo's body parser (`JSON.parse`) turns every
 * number into an IEEE-754 double, so `9007199254740993` would become `9007199254740992` and
 * `12345678901234567890123` `1.2345678901234568e+22`, while Postgres jsonb (numeric) would have kept them. The
 * demo refuses such a body with a 400 instead of storing a value that was never sent; it checks the raw text,
 * because after parsing the difference is gone.
 */

// Strings are matched whole, so digits inside them are never taken for numbers (the text is valid JSON: the
// body parser accepted it). The string branch is the "unrolled loop" form: linear, no nested backtracking.
const TOKENS = /"[^"\\]*(?:\\[\s\S][^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
// At most 15 significant digits and no exponent: every such decimal survives a round trip through a double.
const SHORT_PLAIN_NUMBER = /^-?[\d.]{1,15}$/;

/** The first number literal of the JSON text `json` whose value a double cannot hold exactly, or undefined. */
export function inexactNumber(json: string): string | undefined {
  // No digit at all: no number to check.
  if (!/\d/.test(json)) return undefined;
  for (const [token] of json.matchAll(TOKENS)) {
    if (token.charCodeAt(0) === 34 /* " */ || SHORT_PLAIN_NUMBER.test(token)) continue;
    if (!isExact(token)) return token;
  }
  return undefined;
}

/** True when the double nearest to the decimal `literal` has exactly its value (what JSON.stringify would write back). */
export function isExact(literal: string): boolean {
  const value = Number(literal);
  if (!Number.isFinite(value)) return false;
  return canonical(literal) === canonical(String(value));
}

/** A decimal literal as `sign digits e exponent`, without leading or trailing zeros: equal values, equal strings. */
function canonical(literal: string): string {
  const match = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(literal);
  if (match === null) return literal;
  const [, sign, whole, fraction = '', exponent = '0'] = match;
  let digits = whole + fraction;
  let scale = Number(exponent) - fraction.length;
  digits = digits.replace(/^0+/, '');
  if (digits === '') return '0';
  const trimmed = digits.replace(/0+$/, '');
  scale += digits.length - trimmed.length;
  return `${sign}${trimmed}e${scale}`;
}
