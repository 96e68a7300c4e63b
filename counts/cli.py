"""Command-line tools: `flask --app app db upgrade | bump | token | drain-outbox | push-worker`."""

from uuid import UUID

import click
from flask import Flask, current_app

from counts import markers
from counts.bumps import outbox
from counts.identity import DEFAULT_AUDIENCE, mint_token
from counts.postgres import migrations


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
        res = _resources()
        applied = migrations.upgrade(res.db, res.source.name, res.source.schema)
        click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
        # Attached: the app's function may come after our schema (its triggers call counts.bump),
        # so this is only a note; the server refuses to start until it is right.
        problem = res.db.read(res.source.problem)
        if problem is not None:
            click.echo(f"note: {problem}", err=True)

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
        """Print an HS256 token for USER_ID (or a service), signed with COUNTS_JWT_SECRET."""
        if not service:
            UUIDParam().convert(user_id, None, None)
        identity = _resources().settings.identity
        if not identity.jwt_secret:
            raise click.ClickException(
                "COUNTS_JWT_SECRET is not set, so this service accepts no token it could sign: "
                "users' tokens come from the identity provider (COUNTS_JWKS_URL). Set a secret "
                "of your own to mint service tokens.")
        # Shaped as Supabase's, so that this service's own audience and issuer checks pass.
        audience = (identity.audience or (DEFAULT_AUDIENCE,))[0]
        click.echo(mint_token(identity.jwt_secret, user_id, service, ttl, audience=audience,
                              issuer=identity.issuer))

    @app.cli.command("drain-outbox")
    def drain_outbox():
        """Bump every queued bump now (the workers also do this every few seconds)."""
        res = _resources()
        click.echo(f"bumped {outbox.drain(res.db, res.redis, res.marker_ttl, wal=res.postgres.wal)}")

    @app.cli.command("push-worker")
    def push_worker():
        """Run a push dispatcher until SIGTERM or SIGINT (which finish the round in flight)."""
        from counts.push.worker import run_worker

        run_worker(_resources().settings)
