"""Local fakes of the push services, for tests and the push benchmark only (never the service's code).

Apple and Google cannot be reached from the machines this project is tested on, so each fake
enforces the rules its provider documents (listed in each module's docstring) and can be told to
fail the ways the real ones do: 429/503 with Retry-After, gone tokens, no answer at all.

- `server`: serve an ASGI app over TLS (HTTP/2 and HTTP/1.1) with hypercorn, on a thread.
- `tls`: a throwaway certificate authority (trustme) and a server certificate for 127.0.0.1.
- `webpush`: a push service (RFC 8030/8291/8292), and `Subscriber`, the test acting as a browser.
- `apns`: Apple's provider API (HTTP/2, token auth).
- `fcm`: Google's OAuth2 token endpoint and the FCM HTTP v1 send endpoint.
- `expo`: Expo's push service: send (tickets) and getReceipts.
"""
