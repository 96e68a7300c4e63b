export const SPEC: string;
export const TYPES: string;
export const DRIFT_ADVICE: string;
export function generated(spec: unknown): Promise<{ specText: string; typesText: string }>;
export function drift(spec: unknown): Promise<string[]>;
