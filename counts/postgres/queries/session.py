"""Settings of our own connections: the schema searched first, and what a session listens to."""

from psycopg2 import sql

# Our tables come first, then whatever the role or database already searches: the app's unread
# function, which runs with the caller's search_path unless it pins one, resolves its names as
# it does for the app.
# quote_ident, as migrations.SEARCH_ONLY does: a schema name is an identifier, never raw text.
PREPEND_SEARCH_PATH = """
SELECT set_config('search_path', quote_ident(%s) || ', ' || current_setting('search_path'), false)
"""


LISTEN = sql.SQL("LISTEN {channel}")


def listen(cur, channel: str) -> None:
    """Have this (autocommit) session notified of what is sent on `channel`."""
    cur.execute(LISTEN.format(channel=sql.Identifier(channel)))


def prepend_search_path(cur, schema: str) -> None:
    """Search `schema` first for the rest of this session (commit to keep it)."""
    cur.execute(PREPEND_SEARCH_PATH, (schema,))
