// A client on the real service with what it did recorded: its trace, the ETags its listeners
// heard, and every token it asked for.
import WebSocket from "ws";
import { CountsClient, type CountsClientOptions, type TraceEvent, type TransportName } from "../../src/index.js";
import { ChatUser, type Service } from "./service.js";

export interface Watched {
  client: CountsClient;
  user: ChatUser;
  trace: (TraceEvent & { at: number })[];
  etags: string[];
  tokens: string[];
}

export async function watched(server: Service, transports: TransportName[], options: Partial<CountsClientOptions> & { tokenSeconds?: number } = {}): Promise<Watched> {
  const user = await ChatUser.create(server);
  const trace: Watched["trace"] = [];
  const etags: string[] = [];
  const tokens: string[] = [];
  const client = new CountsClient({
    baseUrl: server.url, userId: user.id, transports,
    getToken: async () => {
      tokens.push(user.token(options.tokenSeconds));
      return tokens[tokens.length - 1]!;
    },
    WebSocket, pollIntervalMs: 1_000, heartbeatTimeoutMs: 6_000,
    trace: (event) => trace.push({ ...event, at: Date.now() }),
    ...options,
  });
  client.subscribe(() => {
    const { etag } = client.getSnapshot();
    if (etag && etag !== etags[etags.length - 1]) etags.push(etag);
  });
  return { client, user, trace, etags, tokens };
}
