"""For gunicorn: `gunicorn -c gunicorn.conf.py wsgi:app` (what `make run` starts)."""

from counts.app import create_app

app = create_app()
