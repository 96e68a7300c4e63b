"""The HTTP API (counts.http): reads and their conditionals, writes, CORS, rate limits, hostile
input, and the OpenAPI document fuzzed against the live service."""
