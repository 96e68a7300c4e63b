"""The live section of RESULTS.md: the targets of issue #10 and what the live run measured."""

from pathlib import Path

from bench import battery
from bench.live import LiveResult
from bench.tables import fmt, pct, profile_lines, table, verdict

RSS_GOAL_KIB = 16
ROOT = f"{Path(__file__).resolve().parent.parent}/"  # allocation sites are shown relative to it
P99_GOAL_MS = 100
REQUESTS_GOAL = 1.0  # HTTP requests per user per minute
POLLS_PER_MINUTE = 20  # what 3-s polling costs each user


def requests_per_user_minute(live: LiveResult) -> float:
    """HTTP requests the live clients made, per user per minute of the window."""
    return live.requests / max(1, sum(live.opened.values())) / max(1e-9, live.seconds / 60)


def live_targets(live: LiveResult | None) -> list[list[str]]:
    """The live targets, met or not."""
    if live is None:
        return []
    n = sum(live.opened.values())
    rss = live.rss_kib_per_connection.get("all", float("nan"))
    per_kind = ", ".join(f"{k} {fmt(v, 1)}" for k, v in live.rss_kib_per_connection.items()
                         if k != "all")
    p99 = pct(live.latency_ms, 99)
    minimum = live.pg_unread / max(1, live.count_changes)
    rpm = requests_per_user_minute(live)
    return [
        [f"RSS growth per idle live connection <= {RSS_GOAL_KIB} KiB ({n:,} open)",
         f"{fmt(rss, 1)} KiB ({per_kind})", verdict(rss <= RSS_GOAL_KIB)],
        [f"Event latency from the write's 201 to the client, p99 <= {P99_GOAL_MS} ms "
         f"(writers at the seed's rate x{live.config.time_compression:g})",
         f"p50 {fmt(pct(live.latency_ms, 50), 1)} ms, p99 {fmt(p99, 1)} ms over "
         f"{len(live.latency_ms):,} deliveries ({live.undelivered:,} not delivered in the window)",
         verdict(p99 <= P99_GOAL_MS and live.undelivered == 0)],
        ["0 missed final states", f"{live.missed_final:,} of {n:,} clients",
         verdict(live.missed_final == 0)],
        [f"HTTP requests per user per minute <= {REQUESTS_GOAL:g} (3-s polling: "
         f"{POLLS_PER_MINUTE})", f"{rpm:.2f}", verdict(rpm <= REQUESTS_GOAL)],
        ["Postgres queries on live connections = the information minimum",
         f"{minimum:.3f}x ({live.pg_unread:,} queries / {live.count_changes:,} count changes)",
         verdict(minimum <= 1.05)],
    ]


def battery_lines(live: LiveResult) -> list[str]:
    """Battery impact per strategy (issue 17), from the service's counters around the window."""
    if not live.service:
        return []
    users = max(1, sum(live.opened.values()))
    rows = battery.per_device_hour(live.service, live.seconds, live.config.time_compression,
                                   60 / POLLS_PER_MINUTE, live.count_changes / users)
    return ["### Battery: requests and wake-ups per device per hour (issue 17)", "",
            "From the service's own counters (`counts_device_requests_total`, "
            "`counts_wakeups_total`, `counts_live_connections`, on its operators' address) over the "
            "window above, for the same users: what each way of staying current costs a device. "
            "A wake-up is a write to the device (counts, a heartbeat or ping, a long-poll's answer, "
            "a push). At the seed's rate: the writes' share divided by the time compression "
            f"(x{live.config.time_compression:g}), keep-alives unchanged; push and polling are "
            "derived (one push per count change at most; one poll per interval).", "",
            *table(["strategy", "devices", "requests", "wake-ups (measured)",
                    "wake-ups at the seed's rate"], rows), ""]


def live_section(live: LiveResult | None) -> list[str]:
    """How the live run went, in full."""
    if live is None:
        return []
    cfg = live.config
    mix = ", ".join(f"{kind} {share:.0%}" for kind, share in cfg.mix.items())
    rows = [["connections open (by transport)", ", ".join(f"{k} {v:,}" for k, v in
                                                          live.opened.items())],
            ["measured seconds", fmt(live.seconds, 1)],
            ["writes (messages and mark-reads), count changes", f"{live.writes:,}, "
             f"{live.count_changes:,}"],
            ["counts delivered (events, frames, long-poll 200s)", f"{live.events:,}"],
            ["HTTP requests of the live clients in the window", f"{live.requests:,}"],
            ["latency p50 / p90 / p99 / max (ms)", " / ".join(
                fmt(pct(live.latency_ms, q), 1) for q in (50, 90, 99, 100))],
            ["Postgres unread-count queries", f"{live.pg_unread:,}"],
            ["CPU, cores: service / Redis / Postgres / load generator / machine", " / ".join(
                fmt(live.cpu_cores.get(k, float("nan")), 2) for k in
                ("service", "redis", "postgres", "load generator", "machine (all processes)"))],
            ["client errors", ", ".join(f"{k}: {v}" for k, v in live.errors.items()) or "none"]]
    lines = ["## Live connections (issue #10)", "",
             f"{sum(live.opened.values()):,} users of the seeded world hold one live connection "
             f"each ({mix}) to 2 gevent workers, opened at up to 1,000/s, while writers send "
             f"messages and mark-reads through the HTTP API at the seed's "
             f"{cfg.messages_per_user_day:g} messages per user per day x{cfg.time_compression:g}. "
             "RSS growth per connection is marginal: the workers' resident memory across the second "
             "half of each transport's connections (opened, then idle 2 s), over their number, "
             "so that what the first ones pay once is not counted. Latency: for every message and recipient, "
             "from the writer's 201 to the first counts that reached the recipient's client after "
             "the write was sent (0 when they arrived before the 201). Final states: every "
             "client's last total against the service's own query, 3 s after the writes stopped.",
             "", *table(["", ""], rows), ""]
    lines += battery_lines(live)
    if live.final_errors:
        lines += ["Missed final states (first ten):", "", *(f"- {e}" for e in live.final_errors), ""]
    return (lines + memory_lines(live)
            + profile_lines("Where the service's CPU goes with live connections (py-spy)",
                            live.profile))


def memory_lines(live: LiveResult, sites: int = 8) -> list[str]:
    """Where an idle connection's bytes go (bench.live_memory), when the RSS goal was missed."""
    if not live.memory:
        return []
    lines = [f"### Where an idle live connection's bytes go (RSS goal {RSS_GOAL_KIB} KiB missed)", "",
             f"Each transport alone, {live.memory[0]['connections']:,} connections on one worker "
             "with tracemalloc on (`python -m bench.live_memory <transport> --trace`): the bytes "
             "Python's allocators traced per connection against the RSS per connection "
             "of the pass above, then the allocation sites that grew most (tracemalloc's own "
             "records inflate the RSS of a traced run, so the pass's RSS is the one shown). What "
             "tracemalloc does not see is mostly each greenlet's: its saved C stack beyond what "
             "Python allocates, and the Python frame area it maps.", ""]
    for found in live.memory:
        rss = live.rss_kib_per_connection.get(found["kind"], float("nan"))
        lines += [f"**{found['kind']}**: traced {fmt(found['traced_kib'], 1)} KiB of "
                  f"{fmt(rss, 1)} KiB RSS per connection"
                  + (f" ({len(found['failed'])} failed to open)" if found["failed"] else ""), "",
                  *table(["bytes / connection", "blocks / connection", "allocated at"],
                         [[fmt(size, 0), fmt(count, 1), f"`{site.removeprefix(ROOT)}`"]
                          for size, count, site in found["sites"][:sites]]), ""]
    return lines
