"""Command-line tools: `flask --app app db upgrade | bump | token | drain-outbox`."""

from uuid import UUID

import click
from flask import Flask, current_app

from counts import markers, migrations, outbox
from counts.auth import mint_token


def _resources():
    return current_app.extensions["counts"]


class UUIDParam(click.ParamType):
    """A click argument that must be a UUID."""

    name = "uuid"

    def convert(self, value, param, ctx):
        try:
            return UUID(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a UUID", param, ctx)


def register(app: Flask) -> None:
    """Attach the commands to the app's CLI."""

    @app.cli.group("db")
    def db_group():
        """Schema management."""

    @db_group.command("upgrade")
    def db_upgrade():
        """Apply the migrations the database lacks (running it twice changes nothing)."""
        applied = migrations.upgrade(_resources().db)
        click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")

    @app.cli.command("bump")
    @click.argument("user_ids", nargs=-1, required=True, type=UUIDParam())
    def bump(user_ids):
        """Bump the markers of USER_IDS (after you changed their counts in Postgres)."""
        res = _resources()
        click.echo(f"bumped {markers.bump(res.redis, user_ids, res.marker_ttl, res.postgres.wal)}")

    @app.cli.command("token")
    @click.argument("user_id")
    @click.option("--service", is_flag=True, help="A service_role token instead of a user's.")
    @click.option("--ttl", default=3600, show_default=True, type=click.IntRange(min=1),
                  help="Seconds until it expires.")
    def token(user_id, service, ttl):
        """Print a signed token for USER_ID, for debugging with curl."""
        if not service:
            UUIDParam().convert(user_id, None, None)
        click.echo(mint_token(current_app.config["JWT_SECRET"], user_id, service, ttl))

    @app.cli.command("drain-outbox")
    def drain_outbox():
        """Bump every queued bump now (the workers also do this every few seconds)."""
        res = _resources()
        click.echo(f"bumped {outbox.drain(res.db, res.redis, res.marker_ttl, wal=res.postgres.wal)}")
