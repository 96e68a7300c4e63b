"""What tests and benchmarks share, one of each; conftest.py files hold only fixtures built on it.

- Processes: services (free_port, wait_until, PrivateRedis, Gunicorn, LiveClient), proxy
  (TcpProxy), clusters (Redis Cluster, Sentinel, a Postgres replica), identity (a JWKS
  provider and its keys), pushfakes/ (APNs, FCM, Web Push), js_server (the service for
  clients/js's tests).
- The service as tests configure and call it: environment (URLs, secret, each environment the
  service runs with), api (Api, Tokens, new_user), postgres (throwaway databases, the true
  total), markers, push (devices, the queue, the worker process), supabase_chat (the attached
  example), recorders.
- Its live transports: sse (the one SSE parser), live_clients (SSE and WebSocket readers, the
  long-poll).
- Its documents: docs (the code blocks under a heading). And figures: the fault matrix's
  summary.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: where gunicorn and flask run
