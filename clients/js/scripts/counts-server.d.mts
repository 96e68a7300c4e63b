export const REPO_ROOT: string;
export function python(): string;
export interface CountsServer {
  url: string;
  jwtSecret: string;
  command(name: "restart" | "restart-redis", timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}
export function startCountsServer(options?: {
  privateRedis?: boolean;
  workers?: number;
  settings?: Record<string, string>;
  timeoutMs?: number;
}): Promise<CountsServer>;
