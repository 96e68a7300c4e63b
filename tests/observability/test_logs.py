"""The access log's batching: lines arrive whole, in order, and never later than the flush interval."""

import json
import os
import select

import pytest

from counts.observability.logs import AccessLog

COUNTS_ROUTE = "/v1/users/<user_id>/unread-counts"


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def read_lines(fd: int) -> list[dict]:
    """The lines written so far (none: fail, rather than block on the pipe)."""
    assert readable(fd, 0), "nothing was written"
    return [json.loads(line) for line in os.read(fd, 1 << 20).decode().splitlines()]


def test_a_full_buffer_is_written_by_the_request_that_filled_it(pipe):
    read_end, write_end = pipe
    log = AccessLog("info", flush_interval=3600, flush_bytes=1, fd=write_end)
    log.write("GET", COUNTS_ROUTE, 304, 0.0004, "req-1")
    assert readable(read_end, 0)  # already written: no flusher involved
    [line] = read_lines(read_end)
    assert line["logger"] == "counts.access" and line["pid"] == os.getpid()
    assert {k: line[k] for k in ("method", "route", "status", "duration_ms", "request_id")} == {
        "method": "GET", "route": COUNTS_ROUTE, "status": 304, "duration_ms": 0.4,
        "request_id": "req-1"}


def test_lines_wait_for_the_batch_then_arrive_within_the_flush_interval(pipe):
    read_end, write_end = pipe
    log = AccessLog("info", flush_interval=0.2, flush_bytes=1 << 20, fd=write_end)
    try:
        for n in range(3):
            log.write("GET", COUNTS_ROUTE, 304, 0.001, f"req-{n}")
        assert not readable(read_end, 0)  # batched, not written per line
        assert readable(read_end, 10)  # the flusher writes them without another request
        assert [line["request_id"] for line in read_lines(read_end)] == ["req-0", "req-1", "req-2"]
    finally:
        log.close()


def test_close_writes_what_is_pending(pipe):
    read_end, write_end = pipe
    log = AccessLog("info", flush_interval=3600, flush_bytes=1 << 20, fd=write_end)
    log.write("POST", "/v1/markers/bump", 200, 0.002, "req-9")
    assert not readable(read_end, 0)
    log.close()  # what gunicorn's worker_exit does, through Resources.close
    assert [line["request_id"] for line in read_lines(read_end)] == ["req-9"]


def test_odd_strings_stay_valid_json_and_tokens_are_redacted(pipe):
    read_end, write_end = pipe
    log = AccessLog("info", flush_interval=1.0, flush_bytes=1, fd=write_end)
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log.write('GE"T\\', "unmatched\n\u00e9\x00", 400, 0.0, jwt_like)
    [line] = read_lines(read_end)
    assert line["method"] == 'GE"T\\' and line["route"] == "unmatched\n\u00e9\x00"
    assert line["request_id"] == "[redacted-jwt]"


def test_nothing_is_buffered_when_the_level_hides_info(pipe):
    read_end, write_end = pipe
    log = AccessLog("warning", flush_interval=1.0, flush_bytes=1, fd=write_end)
    log.write("GET", COUNTS_ROUTE, 304, 0.001, "req-1")
    log.close()
    assert not readable(read_end, 0)
