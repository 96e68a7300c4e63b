"""counts.markers.readiness: the pool's per-command check of a connection, without gevent's hub.

The check must still catch what redis-py's catches (with redis-py 8's maintenance notifications
on "auto", the pool acts only on a socket found closed), and under gevent it must not switch
greenlets for a clean connection (the ~15 % of a 304 it cost). The gevent half runs in a child
process: this one is not monkey-patched.
"""

import subprocess
import sys
import textwrap

import redis

from counts.markers import store
from counts.markers.readiness import ZeroWaitParser, readable_now
from counts.settings import parse_redis_url
from tests.support.environment import REDIS_URL


def connect():
    return store.connect(parse_redis_url(REDIS_URL), 2, 4)


def test_the_marker_store_uses_the_zero_wait_parser():
    client = connect()
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, ZeroWaitParser)
    finally:
        client.connection_pool.release(connection)
        client.close()


def test_a_clean_connection_is_not_readable_and_one_with_a_reply_waiting_is():
    client = connect()
    connection = client.connection_pool.get_connection()
    try:
        assert not readable_now(connection._sock)
        assert not connection.can_read()
        connection.send_command("PING")
        assert connection.can_read(timeout=2)  # a wait: redis-py's own poll
        assert connection.read_response() in (b"PONG", "PONG", True)
        assert not connection.can_read()
    finally:
        client.connection_pool.release(connection)
        client.close()


def test_a_connection_the_server_closed_is_replaced():
    client = connect()
    client.client_setname("counts-readiness-test")
    killer = redis.Redis.from_url(REDIS_URL)
    try:
        assert killer.client_kill_filter(_id=client.client_id()) == 1
        assert client.ping()
    finally:
        killer.close()
        client.close()


def test_under_gevent_a_clean_checkout_never_switches_greenlets():
    child = textwrap.dedent(f"""
        from gevent import monkey
        monkey.patch_all()
        import greenlet
        from counts.markers import store
        from counts.settings import parse_redis_url
        from redis._parsers import _HiredisParser

        client = store.connect(parse_redis_url({REDIS_URL!r}), 2, 4)
        client.ping()
        connection = client.connection_pool.get_connection()
        switches = []
        greenlet.settrace(lambda event, args: switches.append(event))
        ours = connection.can_read()
        greenlet.settrace(None)
        ours_switched = len(switches)
        switches.clear()
        greenlet.settrace(lambda event, args: switches.append(event))
        stock = _HiredisParser.can_read(connection._parser, 0)
        greenlet.settrace(None)
        print(ours, ours_switched, stock, len(switches))
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ours, ours_switched, stock, stock_switched = done.stdout.split()
    assert (ours, ours_switched, stock) == ("False", "0", "False")
    assert int(stock_switched) > 0  # what the stock check costs: a trip through the hub
