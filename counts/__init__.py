"""counts: unread-message counts that answer "nothing changed" from Redis, not Postgres.

Importing it starts nothing: `counts.app.create_app` builds the service; gunicorn.conf.py reads
`counts.settings` alone in its master process.
"""

__version__ = "1.0.0"
