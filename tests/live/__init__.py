"""The live transports (counts.live): the long-poll on the change feed, and SSE and WebSocket
streams with their tickets."""
