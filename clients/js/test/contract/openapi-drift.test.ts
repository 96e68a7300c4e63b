// The committed API types against the running service's /openapi.json: make test fails here
// when the service's API changed and the types were not regenerated.
import { describe, expect, it } from "vitest";
import { DRIFT_ADVICE, drift } from "../../scripts/openapi.mjs";
import { sharedService } from "../support/service.js";

async function liveSpec(): Promise<Record<string, unknown>> {
  const response = await fetch(`${sharedService().url}/openapi.json`);
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

describe("generated types", () => {
  it("match what the service's /openapi.json generates", async () => {
    expect(await drift(await liveSpec()), DRIFT_ADVICE).toEqual([]);
  });

  it("would fail on a changed API (a field added to Counts)", async () => {
    const spec = await liveSpec();
    const schemas = (spec.components as { schemas: Record<string, { properties: Record<string, unknown> }> }).schemas;
    schemas.Counts!.properties.mentions = { type: "integer" };
    expect(await drift(spec)).toEqual(["openapi/openapi.json", "src/generated/openapi.ts"]);
  });
});
