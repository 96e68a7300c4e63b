"""Live counts for apps in the foreground: long-poll, Server-Sent Events and WebSocket.

- `feed`: the worker's change feed: the users' waiters, batched re-reads, presence for push,
  and the spread-out close at shutdown.
- `subscribers`: the feed's subscriber connections, one per Redis server holding a waited-on
  user (one server or Sentinel: one; a Cluster: one per primary, sharded pub/sub).
- `stream`: what SSE and WebSocket share: the counts a stream sends, change after change.
- `sse`, `ws`: the two stream transports (the long-poll lives with the 304, in the fast path:
  counts.http.middleware.fastpath; the WebSocket upgrade in counts.http.middleware.websocket).
- `tickets`: single-use stream tickets, for browsers that cannot send an Authorization header.
- `collector`: the worker's garbage collector, so that full collections do not walk every held
  connection (their pauses were the live delivery tail).
"""
