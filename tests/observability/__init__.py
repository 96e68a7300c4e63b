"""Operating it (counts.observability): metrics under gunicorn, JSON logs, the access log's
batching."""
