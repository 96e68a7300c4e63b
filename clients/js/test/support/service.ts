// The real counts service for contract, React Native and browser tests: started through
// tests/support/js_server.py, with HS256 tokens minted here as counts/identity/tokens.py mints them.
import { createHmac, randomUUID } from "node:crypto";
import { inject } from "vitest";
import { type CountsServer, startCountsServer } from "../../scripts/counts-server.mjs";

export type { CountsServer };
export { startCountsServer };

/** Where a service is and how its tokens are signed. */
export type Service = Pick<CountsServer, "url" | "jwtSecret">;

/** The service the global setup started for every file (see test/support/global-server.ts). */
export function sharedService(): Service {
  return { url: inject("countsUrl"), jwtSecret: inject("jwtSecret") };
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** An HS256 token: a user's (role and aud "authenticated") or a service's. */
export function mintToken(secret: string, subject: string, options: { ttlSeconds?: number; service?: boolean } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    sub: subject, role: options.service ? "service_role" : "authenticated", iat: now, exp: now + (options.ttlSeconds ?? 3600),
    jti: randomUUID(), // two tokens minted in one second still differ
  };
  if (!options.service) claims.aud = "authenticated";
  const unsigned = `${base64url({ alg: "HS256", typ: "JWT" })}.${base64url(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** A user with a conversation that a friend writes to, on a running service. */
export class ChatUser {
  readonly id = randomUUID();
  readonly friend = randomUUID();
  conversation = "";

  constructor(readonly server: Service) {}

  static async create(server: Service): Promise<ChatUser> {
    const user = new ChatUser(server);
    const response = await fetch(`${server.url}/v1/conversations`, {
      method: "POST", headers: { ...user.serviceAuth(), "Content-Type": "application/json" },
      body: JSON.stringify({ member_ids: [user.id, user.friend] }),
    });
    if (response.status !== 201) throw new Error(`create conversation: ${response.status}`);
    user.conversation = ((await response.json()) as { conversation_id: string }).conversation_id;
    return user;
  }

  token(ttlSeconds = 3600): string {
    return mintToken(this.server.jwtSecret, this.id, { ttlSeconds });
  }

  serviceAuth(): Record<string, string> {
    return { Authorization: `Bearer ${mintToken(this.server.jwtSecret, "js-tests", { service: true })}` };
  }

  /** The friend sends a message; resolves at the 201 with its time. */
  async receiveMessage(): Promise<number> {
    const response = await fetch(`${this.server.url}/v1/conversations/${this.conversation}/messages`, {
      method: "POST", headers: { Authorization: `Bearer ${mintToken(this.server.jwtSecret, this.friend)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ sender_id: this.friend, body: "hi" }),
    });
    if (response.status !== 201) throw new Error(`send: ${response.status} ${await response.text()}`);
    return Date.now();
  }

  /** The counts as a fresh, unconditional GET sees them now (the truth to converge on). */
  async truth(): Promise<number> {
    const response = await fetch(`${this.server.url}/v1/users/${this.id}/unread-counts`, { headers: { Authorization: `Bearer ${this.token()}` } });
    return ((await response.json()) as { total: number }).total;
  }
}

/** Resolves once `condition` holds, checking every 10 ms; rejects after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
