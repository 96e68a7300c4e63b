// Tokens are opaque to the client except for `exp`: a stream is renewed before it, and a token
// about to expire is refreshed before it is used.

export type GetToken = (options: { forceRefresh: boolean }) => Promise<string>;

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** base64url to a string of byte values (JWT claims are JSON: numbers and ASCII keys suffice). */
function decodeBase64Url(text: string): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const char of text.replace(/=+$/, "")) {
    const index = BASE64URL.indexOf(char === "+" ? "-" : char === "/" ? "_" : char);
    if (index < 0) throw new Error("not base64url");
    value = (value << 6) | index;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((value >> bits) & 0xff);
    }
  }
  return out;
}

export interface TokenTimes {
  /** When the token expires, ms since the epoch. */
  expiresAt: number;
  /** When it was issued (`iat`), if it says. */
  issuedAt: number | null;
}

/** `exp` and `iat` of a JWT, or null for a token that is not a JWT or has no `exp`. */
export function tokenTimes(token: string): TokenTimes | null {
  try {
    const claims = JSON.parse(decodeBase64Url(token.split(".")[1] ?? "")) as { exp?: unknown; iat?: unknown };
    if (typeof claims.exp !== "number") return null;
    return { expiresAt: claims.exp * 1000, issuedAt: typeof claims.iat === "number" ? claims.iat * 1000 : null };
  } catch {
    return null;
  }
}

const MAX_RENEW_MARGIN_MS = 60_000;
const MIN_RENEW_MARGIN_MS = 1_000;

/** How long before `exp` a stream is renewed: a minute, or a fifth of a short token's life. */
export function renewMargin(times: TokenTimes): number {
  if (times.issuedAt === null) return MAX_RENEW_MARGIN_MS;
  const life = times.expiresAt - times.issuedAt;
  return Math.max(MIN_RENEW_MARGIN_MS, Math.min(MAX_RENEW_MARGIN_MS, life / 5));
}
