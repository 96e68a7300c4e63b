"""COUNTS_SOURCE=attached: counts from the app's own tables, through the app's unread function.

The app keeps its tables and its writes. It gives counts one function,
`(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, unread bigint ...)` (one row
per conversation with unread > 0, or mentions, or marked unread), whose result columns counts
reads by name: any subset of `mentions bigint`, `notify text`, `marked_unread boolean` and
`parent_id uuid` may follow the first three (attached.OPTIONAL_COLUMNS), and triggers that
call `counts.bump(user_ids)` in the writing transaction; the relay (counts.bumps.relay) moves
the markers once they commit. For push, the same triggers call `counts.push(alert, badge,
conversation_id)`, and the dispatcher pushes the counts this function gives. counts keeps its
own objects in the schema `counts`, away from the app's.
"""

import threading
from collections.abc import Iterable
from uuid import UUID

from psycopg2 import sql

from counts.postgres.queries import attached

SCHEMA = "counts"


class AttachedSource:
    """The app's unread function, named (schema, function) by COUNTS_UNREAD_FUNCTION."""

    name = "attached"
    schema: str | None = SCHEMA
    writable = False  # the app owns its writes: our write endpoints answer 404
    relays_bumps = True

    def __init__(self, function: tuple[str, str], badge_policy: str = "messages"):
        self.function = function
        self.badge_policy = badge_policy
        self._statement: sql.Composed | None = None
        self._lock = threading.Lock()

    @property
    def function_name(self) -> str:
        """The function as COUNTS_UNREAD_FUNCTION named it, for messages."""
        return ".".join(self.function)

    def unread_counts(self, cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
        """Each user's counts, as the app's function says."""
        return attached.unread_counts(cur, self.statement(cur), user_ids, self.badge_policy)

    def statement(self, cur) -> sql.Composed:
        """The counts statement for the function's columns, read from the catalog on first use
        (the start-up check refused a function whose columns are wrong). A function whose result
        changes needs DROP and CREATE, and counts a restart to read its new columns."""
        with self._lock:
            if self._statement is None:
                columns = attached.result_columns(cur, self.function) or {}
                self._statement = attached.unread_counts_statement(self.function, columns)
            return self._statement

    def problem(self, cur) -> str | None:
        """Why the app's function cannot serve counts, or None (see attached.EXPECTED_RESULT)."""
        problem = attached.function_problem(cur, self.function)
        if problem is None:
            return None
        return (f"COUNTS_UNREAD_FUNCTION {self.function_name}: {problem}. counts needs "
                f"{self.function_name}(user_ids uuid[]) RETURNS {attached.EXPECTED_RESULT}, "
                f"executable by the role in DATABASE_URL.")
