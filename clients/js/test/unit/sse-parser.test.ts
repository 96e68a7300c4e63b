// The event-stream parser, against the format's corner cases.
import { describe, expect, it } from "vitest";
import { createSseParser } from "../../src/transports/sse-parser.js";

function parse(chunks: string[]) {
  const out: string[] = [];
  const feed = createSseParser({
    event: (type, data, id) => out.push(`${type}|${data}|${id}`),
    retry: (ms) => out.push(`retry ${ms}`),
  });
  for (const chunk of chunks) feed(chunk);
  return out;
}

describe("createSseParser", () => {
  it("reads events, ids, retry and skips comments", () => {
    expect(parse(["retry: 7000\n\n: heartbeat\n\nevent: counts\nid: \"a\"\ndata: {\"total\":1}\n\n"]))
      .toEqual(["retry 7000", 'counts|{"total":1}|"a"']);
  });

  it("joins data lines, defaults the type, and keeps the last id", () => {
    expect(parse(["id: 1\ndata: a\ndata: b\n\ndata: c\n\n"])).toEqual(["message|a\nb|1", "message|c|1"]);
  });

  it("takes chunks split anywhere, CRLF split across two included", () => {
    const text = "\uFEFFevent: counts\r\nid: x\r\ndata: 1\r\n\r\n";
    for (let cut = 1; cut < text.length; cut++) {
      expect(parse([text.slice(0, cut), text.slice(cut)])).toEqual(["counts|1|x"]);
    }
    // A CR at a chunk's end waits: it may be half a CRLF.
    expect(parse(["data: 1\r", "\r", "data: 2\r\r"])).toEqual(["message|1|undefined"]);
    expect(parse(["data: 1\r", "\r", "data: 2\r\r", "\n"])).toEqual(["message|1|undefined", "message|2|undefined"]);
  });

  it("ignores a bad retry, an id with NUL, and fields without a colon", () => {
    expect(parse(["retry: soon\nid: a\0b\ndata\n\n"])).toEqual(["message||undefined"]);
  });
});
