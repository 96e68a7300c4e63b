"""What operators see of the service: JSON logs, Prometheus metrics, and how busy a worker is.

- `logs`: one JSON object a line, for the app and gunicorn alike, and the batched access log.
- `metrics`: the Prometheus series, correct under several gunicorn workers.
- `load`: a worker's in-flight requests, and the poll interval that follows from them.
"""
