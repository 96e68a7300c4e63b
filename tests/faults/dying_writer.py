"""A writer that dies between commit and bump (run: python -m tests.faults.dying_writer ...).

Arguments: CONVERSATION_ID SENDER_ID BODY. DATABASE_URL, REDIS_URL and COUNTS_JWT_SECRET come from
the environment, as for the service. It builds the service's resources as create_app does and
sends a message through counts.bumps.outbox.write_then_bump, whose bump step SIGKILLs the process: the
transaction (message and outbox row) has committed, no marker has been bumped.
"""

import os
import signal
import sys
from uuid import UUID

from counts.bumps import outbox
from counts.resources import Resources
from counts.settings import Settings
from counts.sources import own


def die_now(*_args) -> None:
    """Stand-in for outbox.bump_and_forget: the process is gone before any bump."""
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Send one message and die right after its commit; returning at all is a failure."""
    conversation, sender, body = argv
    resources = Resources(Settings.from_env())
    outbox.bump_and_forget = die_now
    outbox.write_then_bump(resources.db, resources.redis, resources.marker_ttl,
                           own.send_message, UUID(conversation), UUID(sender), body)
    print("the writer survived its commit", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
