"""redis-py's reply parser, with its per-command "is this connection clean?" check made without
a trip through gevent's hub.

redis-py checks every pooled connection it hands out with `can_read(timeout=0)`: a socket with
unread bytes (a reply left over, or the server's EOF) must not carry the next command. The check
is select.poll with a zero timeout, and under gevent select.poll is gevent's: a zero timeout
still arms a Timeout, parks the greenlet, runs a turn of the hub's loop and is thrown back by the
expired Timeout. py-spy put that at ~15 % of a gevent worker's 304 path (can_read ~10 %, the
Timeout's expiry ~5 %). A poll that cannot wait has nothing to cooperate about, so it is asked of
the operating system's own poll; only a socket that reports readable goes on to redis-py's full
check (a leftover reply, or a closed socket), unchanged.
"""

from typing import Any

from redis._parsers import _HiredisParser

try:  # the poll gevent's monkey-patching replaced, or the one select still has
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a dependency; a gthread-only install
    from select import poll as _poll

from select import POLLIN


def readable_now(sock: Any) -> bool:
    """Whether the socket has bytes (or EOF) to read right now: never waits, never switches."""
    poller = _poll()
    poller.register(sock, POLLIN)
    return bool(poller.poll(0))


class ZeroWaitParser(_HiredisParser):
    """The hiredis parser whose zero-timeout can_read (the pool's check at every checkout)
    polls without gevent's hub; any other wait, and a socket found readable, are redis-py's."""

    def can_read(self, timeout: float = 0) -> bool:
        """Whether a reply (or EOF) is waiting; see the module."""
        if (timeout == 0 and self._reader is not None and self._sock is not None
                and not self._reader.has_data() and not readable_now(self._sock)):
            return False
        return super().can_read(timeout)
