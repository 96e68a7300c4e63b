"""The WSGI layers around Flask, outermost first: the operators' address (counts.http.admin),
`observe` (request id, metrics, access log), `cors`, `websocket` (upgrades, served outside
Flask), `fastpath` (the 304 and the long-poll, answered before Flask)."""
