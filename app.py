"""For the flask CLI: `flask --app app db upgrade | token | bump | push-worker ...`."""

from counts.app import create_app

app = create_app()
