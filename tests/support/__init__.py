"""What tests and benchmarks share, one of each: the services they start (services, clusters,
identity, pushfakes), how they configure and call the service (environment, api, postgres, push,
supabase_chat), the clients of its live transports (sse, live_clients), and the readers of its
documents (docs). conftest.py files hold only fixtures built on these."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: where gunicorn and flask run
