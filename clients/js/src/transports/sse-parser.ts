// The text/event-stream format (WHATWG HTML, "Parsing an event stream"), as much of it as the
// counts stream uses: events with `event`, `data` and `id`, `retry`, and comments. Written here
// rather than depended on: it is forty lines, and the core's size budget is 6 KB.

export interface SseHandlers {
  event(type: string, data: string, id: string | undefined): void;
  retry(ms: number): void;
}

/** A parser fed decoded text in chunks of any size: a line may end in one chunk and its CRLF
 * be split across two. */
export function createSseParser(handlers: SseHandlers): (chunk: string) => void {
  let buffer = "";
  let started = false;
  let type = "";
  let data: string[] = [];
  let id: string | undefined;
  const line = (text: string): void => {
    if (text === "") {
      if (data.length) handlers.event(type || "message", data.join("\n"), id);
      type = "";
      data = [];
      return;
    }
    // A comment (heartbeats) starts with a colon: its field is "", which no branch below takes.
    const [field, ...rest] = text.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
    else if (field === "retry" && /^\d+$/.test(value)) handlers.retry(Number(value));
  };
  return (chunk) => {
    buffer += chunk;
    if (!started && buffer) {
      started = true;
      buffer = buffer.replace(/^\uFEFF/, "");
    }
    // A CR at the very end may be the first half of a CRLF: it waits for the next chunk.
    const lines = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = lines.pop() ?? "";
    for (const text of lines) line(text);
  };
}
