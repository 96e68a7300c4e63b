"""Server-sent events as the service sends them (text/event-stream), one line at a time: the one
parser behind the tests' stream reader (live_clients), the fault matrix's devices and the live
benchmark's clients, whatever reads their bytes."""

import json
from dataclasses import dataclass


@dataclass
class Event:
    """What a stream delivered: counts (with their ETag), a comment, a retry hint, or the end."""

    kind: str  # counts, comment, retry, end
    etag: str | None = None
    counts: dict | None = None
    text: str = ""


class SseParser:
    """Gathers an event's fields until the blank line that ends it; reports comments and retry
    hints as they come."""

    def __init__(self):
        self.fields: dict[str, str] = {}

    def feed(self, line: str) -> Event | None:
        """The Event this line (without its line end) is or completes, if any."""
        if line == "":
            fields, self.fields = self.fields, {}
            if fields.get("event") == "counts":
                return Event("counts", fields.get("id"), json.loads(fields["data"]))
            return None
        if line.startswith(":"):
            return Event("comment", text=line[1:].strip())
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "retry":
            return Event("retry", text=value)
        self.fields[name] = value
        return None
