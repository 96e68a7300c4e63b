"""RESULTS.md, from what a run measured (the chart is bench/chart.py)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.expo_push import ExpoResult, expo_section
from bench.fanout import write_cost_lines
from bench.hotpath import CONFIGURED_CLASS, ES256, MIX_200, HotpathResult
from bench.push import P99_TARGET_S, PushResult
from bench.scaling import (
    BACKGROUND_MEMBERSHIPS,
    BACKGROUND_USERS,
    BACKLOG_MEMBERSHIPS,
    BUSY,
    BUSY_MESSAGES,
    CONVERSATIONS,
    DELETED_SHARE,
    NEWS,
    ScalingResult,
)
from bench.simulate import PassResult
from bench.tables import fmt, pct, profile_lines, table, verdict
from bench.topology import TopologyResult

if TYPE_CHECKING:
    from bench.js_client import ClientResult
    from bench.live import LiveResult
    from bench.mentions import MentionsResult

SEED_USERS, SEED_POLLS_PER_MINUTE = 10_000, 20  # the seed's "10K users x 20 polls/min"
MINUTES_PER_MONTH = 60 * 24 * 30
P99_TARGET_MS = 50.0


@dataclass
class Run:
    """Everything one invocation measured, plus how and where it ran."""

    command: str
    machine: dict[str, str]
    price_per_million: float
    passes: list[PassResult] = field(default_factory=list)  # conditional, naive
    search: list[PassResult] = field(default_factory=list)  # lower rates, if full load failed
    hotpath: HotpathResult | None = None
    scaling: ScalingResult | None = None
    push: PushResult | None = None
    expo: "ExpoResult | None" = None
    topology: TopologyResult | None = None
    live: "LiveResult | None" = None
    client: "ClientResult | None" = None
    mentions: "MentionsResult | None" = None
    wall_seconds: float = 0.0



def rate(p: PassResult) -> float:
    """Polls per second achieved."""
    return p.polls / p.seconds if p.seconds else 0.0


def reads_per_poll(p: PassResult) -> float:
    """Unread-count statements Postgres ran per poll."""
    return p.pg_calls.get("unread", 0) / max(1, p.polls)


def minimum_ratio(p: PassResult) -> float:
    """Unread-count queries over the information minimum."""
    return p.pg_calls.get("unread", 0) / max(1, p.necessary)


def keeps_up(p: PassResult) -> bool:
    """The offered rate served without errors or a backlog (p99 under a second)."""
    return rate(p) >= 0.98 * p.config.offered and pct(p.latency_ms, 99) < 1000 and not p.errors


def meets_load(p: PassResult) -> bool:
    """The full-load target: the offered rate sustained, p99 < 50 ms, zero errors."""
    return (rate(p) >= 0.98 * p.config.offered and pct(p.latency_ms, 99) < P99_TARGET_MS
            and not p.errors)




# --- sections ----------------------------------------------------------------------------------


def targets_section(run: Run) -> list[str]:
    """Every target of issue #3 with the figure that decides it."""
    rows = []
    cond = next((p for p in run.passes if p.mode == "conditional"), None)
    if cond is not None:
        ratio = minimum_ratio(cond)
        figure = (f"{ratio:.3f}x ({cond.pg_calls.get('unread', 0):,} queries / {cond.necessary:,} "
                  f"needed) at {fmt(rate(cond), 0)} polls/s")
        stable = max((p for p in run.search if keeps_up(p)), key=rate, default=None)
        if not keeps_up(cond) and stable is not None:
            # A backlogged pass queues polls across the window's edges and widens the gap
            # between a 200's marker read and its query (invariant 2's extra 200s): judge the
            # target at the highest rate the service keeps up with, and show both.
            figure += (f" (backlogged); {minimum_ratio(stable):.3f}x at {fmt(rate(stable), 0)} "
                       "polls/s, the highest rate without a backlog (p99 < 1 s)")
            ratio = minimum_ratio(stable)
        rows.append(["Postgres queries under conditional polling <= 1.05x the information minimum",
                     figure, verdict(ratio <= 1.05)])
        ok = meets_load(cond)
        figure = (f"offered {fmt(cond.config.offered, 0)}/s, achieved {fmt(rate(cond), 0)}/s, "
                  f"p99 {fmt(pct(cond.latency_ms, 99))} ms, errors {sum(cond.errors.values())}")
        if not ok:
            best = max((p for p in run.search if meets_load(p)), key=rate, default=None)
            figure += ("; highest rate meeting p99: " + (f"{fmt(rate(best), 0)}/s" if best else
                                                         "none of the rates tried"))
        rows.append([f"Offered load sustained ({fmt(cond.config.offered, 0)} polls/s; the seed's is "
                     "3,333), p99 < 50 ms, zero errors", figure, verdict(ok)])
    if run.hotpath is not None:
        hp = run.hotpath
        ratio = hp.ratio(hp.chosen)
        rows.append([f"304 path >= 0.8x the bare-WSGI + Redis floor (req/s per worker, {hp.chosen})",
                     f"{ratio:.2f}x ({fmt(hp.median((hp.chosen, 'counts', '304')), 0)} vs "
                     f"{fmt(hp.median((hp.chosen, 'floor', '304')), 0)} req/s)", verdict(ratio >= 0.8)])
        es256 = hp.ratio(hp.chosen, "304", ES256)
        rows.append([f"304 path with ES256 tokens from a JWKS within 5 % of that ratio ({hp.chosen})",
                     f"{es256:.2f}x ({fmt(hp.median((hp.chosen, ES256, '304')), 0)} req/s; HS256 "
                     f"{ratio:.2f}x; app CPU {fmt(hp.median((hp.chosen, ES256, '304'), 'app_us'), 0)}"
                     f" vs {fmt(hp.median((hp.chosen, 'counts', '304'), 'app_us'), 0)} us/req)",
                     verdict(es256 >= 0.95 * ratio)])
    if run.scaling is not None:
        rows += scaling_targets(run.scaling)
    # The 3-primary Cluster bump (<= 100 ms before) is among issue 20's goals (<= 50 ms), below.
    from bench.cost_goals import cost_goals  # these import this module's helpers
    from bench.live_report import live_targets

    rows += live_targets(run.live)
    return ["## Targets", "", *table(["target", "measured", ""], rows), "",
            "### Issue 20: faster where it costs money", "",
            "Every goal of issue 20's table, whether or not this run measured it; ratios are "
            "within this run.", "", *table(["goal", "measured", ""], cost_goals(run)), ""]



def scaling_targets(sc: ScalingResult) -> list[list[str]]:
    """The 200-path and bump targets."""
    rows = []
    heavy = next(p.label for p in sc.probes if p.memberships == 1_000)
    small, large = min(sc.sizes), max(sc.sizes)
    if len(sc.sizes) > 1:
        a, b = sc.http[small, heavy].p99, sc.http[large, heavy].p99
        rows.append([f"200 path p99 at {large:,} messages <= 1.2x at {small:,} (1,000 memberships)",
                     f"{b / a:.2f}x ({fmt(b, 2)} vs {fmt(a, 2)} ms)", verdict(b / a <= 1.2)])
    else:
        rows.append(["200 path p99 at 10M messages <= 1.2x at 1M", f"only {large:,} measured "
                     "(pass --sizes 1000000,10000000)", "not measured"])
    p99 = sc.http[large, heavy].p99
    rows.append([f"200 path < 5 ms at 1,000 memberships (p99, {large:,} messages)",
                 f"{fmt(p99, 2)} ms (query alone {fmt(sc.query[large, heavy].p99, 2)} ms)",
                 verdict(p99 < 5)])
    bump = sc.bump_api.get(10_000)
    if bump is not None:
        rows.append(["A 10,000-user bump in one round trip under 20 ms (p99, markers.bump)",
                     f"{fmt(bump.p99, 2)} ms (p50 {fmt(bump.p50, 2)} ms)", verdict(bump.p99 < 20)])
    return rows


def simulation_section(run: Run) -> list[str]:
    """Naive and conditional polling side by side."""
    if not run.passes:
        return []
    cfg = run.passes[0].config
    lines = ["## Load simulator: the same traffic, conditional and naive", "",
             f"{cfg.users:,} simulated apps poll every {cfg.interval:g} s (+-{cfg.jitter:.0%} "
             f"jitter), {fmt(cfg.offered, 0)} polls/s offered, over {cfg.connections} keep-alive "
             f"connections (a load balancer's pool); "
             f"{'honouring' if cfg.honour_poll_interval else 'not honouring'} X-Poll-Interval. "
             f"Writers: {cfg.messages_per_user_day:g} messages per user per day, time-compressed "
             f"x{cfg.time_compression:g} = {fmt(cfg.message_rate)} messages/s, and as many "
             f"mark-reads, through the HTTP API. Measured over {cfg.duration:g} s after every app "
             "holds an ETag. Postgres figures come from pg_stat_statements, Redis's from INFO "
             "commandstats, bytes from the client's sockets (HTTP bytes; TCP/IP headers not "
             "included), CPU from /proc.", ""]
    columns = [pass_column(p) for p in run.passes]
    rows = [[label, *(column[i][1] for column in columns)] for i, (label, _) in enumerate(columns[0])]
    return [*lines, *table(["", *(p.mode for p in run.passes)], rows), ""]


def pass_column(p: PassResult) -> list[tuple[str, str]]:
    """One pass's figures, as (label, value)."""
    polls = max(1, p.polls)
    minutes = p.seconds / 60
    per_min = {kind: fmt(calls / minutes, 0) for kind, calls in p.pg_calls.items()}
    redis_total = sum(p.redis_calls.values())
    cpu = p.cpu_cores
    machine = cpu.get("machine (all processes)", 0.0)
    others = max(0.0, machine - sum(v for k, v in cpu.items() if k != "machine (all processes)"))
    loadgen = cpu.get("load generator", 0.0)
    values = [
        ("polls/s offered", fmt(p.config.offered, 0)),
        ("polls/s achieved", fmt(rate(p), 0)),
        ("share of 304s", f"{p.status.get(304, 0) / polls:.2%}"),
        ("X-Poll-Interval received (s: share of polls; it doubles while a worker is saturated)",
         ", ".join(f"{value}: {count / polls:.1%}" for value, count in
                   sorted(p.poll_intervals.items()))),
        ("errors", f"{sum(p.errors.values())} {dict(p.errors) or ''}"),
        ("latency p50 / p95 / p99 (ms, from the scheduled time)",
         " / ".join(fmt(pct(p.latency_ms, q), 2) for q in (50, 95, 99))),
        ("server time p99 (ms, from the send)", fmt(pct(p.service_ms, 99), 2)),
        ("load generator's own wake-up lateness p99 (ms)", fmt(pct(p.lag_ms, 99), 2)),
        ("Postgres unread-count queries/min", per_min.get("unread", "0")),
        ("Postgres queries per poll", f"{reads_per_poll(p):.4f}"),
        ("information minimum (polls after a count change)", f"{p.necessary:,}"),
        ("queries / information minimum", f"{p.pg_calls.get('unread', 0) / max(1, p.necessary):.3f}"),
        ("outbox drainer claims/min", per_min.get("drainer", "0")),
        ("write statements/min (+ outbox rows, + BEGIN/COMMIT)",
         f"{per_min.get('writes')} (+ {per_min.get('outbox')}, + {per_min.get('transaction')})"),
        ("Redis commands per poll (INFO commandstats: commands inside scripts count too)",
         f"{redis_total / polls:.2f}: " + ", ".join(
             f"{name} {calls / polls:.2f}" for name, calls in
             sorted(p.redis_calls.items(), key=lambda item: -item[1]) if calls >= 0.005 * polls)),
        ("Redis SETs per count change (bumps, plus markers created in the window)",
         f"{p.redis_calls.get('set', 0) / max(1, p.count_changes):.2f}"),
        ("bytes per poll (request + response)", fmt((p.bytes_sent + p.bytes_received) / polls, 0)),
        ("response bytes per poll", fmt(p.bytes_received / polls, 0)),
        ("messages / mark-reads sent, write errors",
         f"{p.writes.get('messages', 0):,} / {p.writes.get('reads', 0):,}, {p.writes.get('errors', 0)}"),
        ("write latency p50 / p99 (ms)", f"{fmt(pct(p.write_ms, 50))} / {fmt(pct(p.write_ms, 99))}"),
        ("CPU, cores: service / Redis / Postgres",
         " / ".join(f"{cpu.get(k, 0):.2f}" for k in ("service", "redis", "postgres"))),
        ("CPU, cores: load generator (us per poll)",
         f"{loadgen:.2f} ({fmt(1e6 * loadgen / max(rate(p), 1), 0)})"),
        ("CPU, cores: whole machine (others' processes)", f"{machine:.2f} ({others:.2f})"),
    ]
    return values


def cost_section(run: Run) -> list[str]:
    """The seed's table recomputed from the measured rates."""
    passes = {p.mode: p for p in run.passes}
    if set(passes) != {"conditional", "naive"}:
        return []
    polls_min = SEED_USERS * SEED_POLLS_PER_MINUTE
    price = run.price_per_million
    rows = []
    for mode in ("naive", "conditional"):
        p = passes[mode]
        reads_min = polls_min * reads_per_poll(p)
        bytes_min = polls_min * (p.bytes_sent + p.bytes_received) / max(1, p.polls)
        reads_month = reads_min * MINUTES_PER_MONTH
        rows.append([mode, f"{reads_per_poll(p):.4f}", fmt(reads_min, 0), fmt(reads_month, 0),
                     f"${reads_month / 1e6 * price:,.2f}", fmt(bytes_min / 1e6, 1)])
    naive, cond = (reads_per_poll(passes[m]) for m in ("naive", "conditional"))
    nb, cb = ((passes[m].bytes_sent + passes[m].bytes_received) / max(1, passes[m].polls)
              for m in ("naive", "conditional"))
    nr, cr = (passes[m].bytes_received / max(1, passes[m].polls) for m in ("naive", "conditional"))
    compression = passes["conditional"].config.time_compression
    lines = ["## The seed's cost table, recomputed from the measured rates", "",
             f"The seed: {SEED_USERS:,} users x {SEED_POLLS_PER_MINUTE} polls/min = "
             f"{polls_min:,} polls/min. Reads per poll are measured (Postgres unread-count "
             f"statements / polls); the price is an **assumption**, not the seed's: "
             f"${price:.2f} per million reads (`--price-per-million-reads`).", "",
             *table(["polling", "Postgres reads per poll", "reads/min at the seed's load",
                     "reads/month", "cost/month", "MB/min on the wire"], rows), "",
             f"Conditional polling cuts Postgres reads by **{1 - cond / max(naive, 1e-9):.1%}**, "
             f"bytes on the wire by **{1 - cb / max(nb, 1e-9):.1%}** and response bytes by "
             f"**{1 - cr / max(nr, 1e-9):.1%}** (the seed claims 99 % and 90 %+). The request, with "
             "its JWT, is the same size either way, and a 304 still carries its headers.",
             "", f"The writers ran time-compressed x{compression:g}, so every user's counts changed "
             f"{compression:g}x as often as at the seed's 50 messages/user/day: the conditional "
             "reads per poll above are pessimistic. Reads scale with count changes, so at the "
             f"real rate they would be about {cond / compression:.4f} per poll "
             f"({1 - cond / compression / max(naive, 1e-9):.2%} fewer than naive): an "
             "extrapolation, not a measurement.", ""]
    return lines


def search_section(run: Run) -> list[str]:
    """Lower rates tried when the full load missed its target."""
    if not run.search:
        return []
    rows = [[f"{p.config.users:,}", fmt(p.config.offered, 0), fmt(rate(p), 0),
             fmt(pct(p.latency_ms, 99), 2), str(sum(p.errors.values())), f"{minimum_ratio(p):.3f}",
             f"{p.cpu_cores.get('service', 0):.2f}", f"{p.cpu_cores.get('load generator', 0):.2f}",
             f"{p.cpu_cores.get('machine (all processes)', 0):.2f}", verdict(meets_load(p))]
            for p in run.search]
    return ["### Highest rate that meets p99 < 50 ms (conditional, shorter passes)", "",
            *table(["users", "offered/s", "achieved/s", "p99 ms", "errors", "queries / minimum",
                    "service cores", "load generator cores", "machine cores busy", "target"],
                   rows), ""]


def hotpath_section(hp: HotpathResult | None) -> list[str]:
    """Requests/s and CPU per request of 304, 200 and the floor, by worker class."""
    if hp is None:
        return []
    rows = []
    for (worker_class, app, mode), runs in hp.runs.items():
        key = (worker_class, app, mode)
        statuses = {k: sum(r.statuses[k] for r in runs) for k in runs[0].statuses}
        what = {"floor": "bare WSGI + 1 Redis GET (floor)", "counts": f"counts, {mode} path",
                ES256: f"counts, {mode} path, ES256 tokens (JWKS)"}[app]
        ratio = fmt(hp.ratio(worker_class, mode, app), 2) if app != "floor" else "1.00"
        rows.append([worker_class, what, fmt(hp.median(key), 0), ratio,
                     fmt(hp.median(key, "app_us"), 0), fmt(hp.median(key, "total_us"), 0),
                     fmt(hp.median(key, "p99_ms"), 1),
                     ", ".join(f"{k}: {v:,}" for k, v in statuses.items() if v),
                     str(sum(r.errors for r in runs))])
    lines = ["## Hot path: one worker, pinned, against the floor", "",
             f"One gunicorn worker pinned to core 0 (`taskset -c 0`), wrk pinned to core 1 "
             f"(`wrk -t1 -c{hp.connections} -d{hp.duration:g}s`, bench/poll.lua: 5,000 users, "
             "each with its own token and ETag: HS256, and for the ES256 row ES256 tokens with the "
             "same claims checked against a JWKS the bench serves; every token is verified once "
             "while the servers warm up, so the rounds measure pollers' steady state, a token the "
             "verifier's cache holds; the rate limiter "
             "counts every poll but is set never to refuse), medians of "
             f"{len(next(iter(hp.runs.values())))} interleaved rounds. CPU per request: the gunicorn "
             "processes, and with Redis and Postgres.", "",
             *table(["worker class", "what answers", "req/s", "x floor", "app CPU us/req",
                     "+ Redis + PG us/req", "p99 ms", "statuses", "errors"], rows), "",
             f"Worker class judged: **{hp.chosen}**, the one the service ships "
             f"({CONFIGURED_CLASS}: live connections need it; other classes are measured for "
             f"comparison). Requests/s on a poll mix of {1 - MIX_200:.0%} 304s and {MIX_200:.0%} "
             "200s: "
             + ", ".join(f"{c} {fmt(hp.mixed(c), 0)}/s" for c in sorted({k[0] for k in hp.runs}))
             + ". This machine's run-to-run drift is 10-20 %, more while other jobs share it: "
             "compare rows of one run.", ""]
    return lines + profile_lines("Where the 304 path's CPU goes (py-spy, the judged class, under wrk)",
                                 hp.profile)



def scaling_section(sc: ScalingResult | None) -> list[str]:
    """200-path time versus memberships, messages and backlog; bumps; marker memory."""
    if sc is None:
        return []
    rows = []
    for probe in sc.probes:
        row = [probe.label]
        for size in sc.sizes:
            q, h = sc.query[size, probe.label], sc.http[size, probe.label]
            row += [f"{fmt(q.p50, 2)} / {fmt(q.p99, 2)}", f"{fmt(h.p50, 2)} / {fmt(h.p99, 2)}"]
        rows.append(row)
    header = ["probe"]
    for size in sc.sizes:
        header += [f"query, {size:,} msgs", f"200 path, {size:,} msgs"]
    lines = ["## Scaling", "",
             f"{CONVERSATIONS:,} conversations; {BACKGROUND_USERS:,} background users in "
             f"{BACKGROUND_MEMBERSHIPS} each; the first {BUSY} conversations hold "
             f"{BUSY_MESSAGES:,} messages each and the rest share the remainder evenly; "
             f"{DELETED_SHARE:.0%} of messages deleted (the counts query subtracts deleted "
             "messages in the unread gap). Probe users: `k memberships`: news (10 unread) in "
             f"{NEWS} of their k conversations, the rest read to the end (the goal's probe: "
             "cost by what is unread); `k memberships, all unread`: 10 unread in every one (cost "
             f"by unread conversations, not memberships); {BACKLOG_MEMBERSHIPS} memberships (the "
             "busy conversations) with a growing backlog in each. Everyone else has read "
             "everything. Cells are p50 / p99 in ms: the service's counts statement alone "
             "(client-timed), and the whole 200 path over HTTP (one keep-alive client; one "
             "database and one single-worker gthread server per size, the sizes measured in "
             "interleaved blocks).", "",
             *table(header, rows), "",
             "Seeding: " + ", ".join(f"{size:,} messages in {sc.seed_seconds[size]:.0f} s"
                                     for size in sc.sizes)
             + " (members by COPY; messages by batched server-side INSERT ... SELECT on two "
             "connections, the indexes dropped and rebuilt after).", "",
             ]
    for label, plan in sc.plans.items():
        lines += [f"Plan of the counts statement for the `{label}` user at {max(sc.sizes):,} "
                  "messages (only the memberships the partial index holds are read):", "",
                  "```", plan, "```", ""]
    lines += write_cost_lines(sc.write_cost)
    bump_rows = [[f"{n:,}", f"{fmt(sc.bump_api[n].p50, 2)} / {fmt(sc.bump_api[n].p99, 2)}",
                  f"{fmt(sc.bump_http[n].p50, 2)} / {fmt(sc.bump_http[n].p99, 2)}"] for n in sc.bump_api]
    lines += ["### Bump time versus fan-out", "",
              *table(["users bumped", "markers.bump, one pipeline (p50 / p99 ms)",
                      "POST /v1/markers/bump (p50 / p99 ms)"], bump_rows), "",
              f"Redis memory per marker: **{sc.marker_bytes:.0f} bytes** (used_memory over 100,000 "
              f"markers with their TTL); MEMORY USAGE of one marker key: {sc.marker_memory_usage} "
              "bytes.", ""]
    lines += profile_lines("Where the 200 path's CPU goes (1,000 memberships, py-spy of the worker)",
                           sc.profile_200)
    lines += profile_lines("Where a 10,000-user markers.bump spends its time (py-spy of the caller)",
                           sc.profile_bump)
    return lines


def push_section(pr: PushResult | None) -> list[str]:
    """Push: one dispatcher's throughput, and latency from a write's 201 to the push service."""
    if pr is None:
        return []
    latency = pr.latency_s
    p99 = pct(latency, 99)
    cpu_ms = 1000 * pr.dispatcher_cpu_seconds / max(1, pr.throughput_pushes)
    rows = [
        ["pushes/s, one dispatcher process, to the Web Push fake (aes128gcm + VAPID + TLS)",
         f"{fmt(pr.pushes_per_second, 0)} ({cpu_ms:.2f} ms of dispatcher CPU a push)", "-"],
        [f"p99 from the write's 201 to the push service's receipt, {fmt(pr.offered_per_second, 1)} "
         f"messages/s for {fmt(pr.duration, 0)} s",
         f"{fmt(p99, 3)} s (p50 {fmt(pct(latency, 50), 3)} s, max {fmt(max(latency, default=0), 3)} s)",
         f"<= {P99_TARGET_S:.0f} s: {verdict(p99 <= P99_TARGET_S)}"],
        ["messages written (201) / pushes received / messages no push carried",
         f"{pr.messages:,} / {pr.pushes:,} / {pr.undelivered:,}", "0 undelivered"],
    ]
    return ["## Push (issue 12)", "",
            f"{pr.users:,} users, each with one Web Push subscription to the local fake (the "
            "tests' `tests/support/pushfakes`, over TLS with a private CA; it verifies every VAPID "
            "signature). Throughput: jobs queued at once, then one `flask --app app push-worker`. "
            "Latency: writes through the API at the seed's messages per user per day, "
            "time-compressed; a message counts as delivered by the first push whose (decrypted) "
            "total includes it (one that beat the writer's 201 counts as 0 s). Coalescing (2 s) "
            "holds a second message to the same user within the window: that is in the figures.",
            "",
            *table(["", "measured", "goal"], rows), ""]


def topology_section(topo) -> list[str]:
    """Redis' cost per poll and per bumped user, memory per user, bumps by topology."""
    if topo is None:
        return []
    rows = [[label, fmt(c.bytes_in, 0), fmt(c.bytes_out, 0), f"{c.commands:.2f}", fmt(c.server_us, 2)]
            for label, c in topo.costs.items()]
    memory = [[label, fmt(b, 0)] for label, b in topo.memory.items()]
    bumps = [[label, f"{fmt(t.p50, 2)} / {fmt(t.p99, 2)}"] for label, t in topo.bumps.items()]
    return ["## Past one machine: what a user costs Redis, and bumps by topology", "",
            "Redis' own counters (INFO stats and commandstats, commands run inside scripts "
            "included) around polls of 2,000 users and bumps of 10,000, on the private server; "
            "then a 10,000-user markers.bump on one server and on a 3-primary Redis Cluster "
            "started for the run. docs/SCALING.md multiplies these.", "",
            *table(["operation", "bytes in", "bytes out", "commands (scripts' included)",
                    "server us"], rows), "",
            *table(["Redis memory per user", "bytes (used_memory)"], memory), "",
            *table(["10,000-user bump", "p50 / p99 ms"], bumps), ""]


def machine_section(run: Run) -> list[str]:
    """How and where the numbers were made."""
    rows = [[key, value] for key, value in run.machine.items()]
    return ["## Machine and command", "", "```", run.command, "```", "",
            *table(["", ""], rows), "",
            f"Wall time of the whole run: {run.wall_seconds / 60:.1f} min. Absolute figures drift "
            "10-20 % between runs on these shared machines; compare within a "
            "run. Other processes' CPU during each pass is shown above.", ""]


def headline(run: Run) -> list[str]:
    """The few numbers the README quotes."""
    lines = []
    passes = {p.mode: p for p in run.passes}
    if set(passes) == {"conditional", "naive"}:
        cond, naive = passes["conditional"], passes["naive"]
        polls_min = SEED_USERS * SEED_POLLS_PER_MINUTE
        rn, rc = reads_per_poll(naive), reads_per_poll(cond)
        lines.append(
            f"- Postgres reads per poll: naive {rn:.3f}, conditional {rc:.4f} "
            f"(**{1 - rc / max(rn, 1e-9):.1%} fewer**; {minimum_ratio(cond):.2f}x the information "
            f"minimum). At the seed's {polls_min:,} polls/min: {fmt(polls_min * rn, 0)} vs "
            f"{fmt(polls_min * rc, 0)} reads/min.")
        nb, cb = ((p.bytes_sent + p.bytes_received) / max(1, p.polls) for p in (naive, cond))
        lines.append(f"- Bytes on the wire per poll: naive {fmt(nb, 0)}, conditional {fmt(cb, 0)} "
                     f"({1 - cb / max(nb, 1e-9):.0%} fewer; the request and its JWT dominate).")
        lines.append(f"- {fmt(cond.config.offered, 0)} polls/s offered on 2 cores with the load "
                     f"generator: {fmt(rate(cond), 0)}/s achieved, p99 "
                     f"{fmt(pct(cond.latency_ms, 99), 1)} ms (conditional); naive "
                     f"{fmt(rate(naive), 0)}/s, p99 {fmt(pct(naive.latency_ms, 99), 1)} ms.")
        best = max((p for p in run.search if meets_load(p)), key=rate, default=None)
        if not meets_load(cond):
            lines.append("- Highest rate meeting p99 < 50 ms: "
                         + (f"{fmt(rate(best), 0)} polls/s." if best else "none of the rates tried."))
    if run.hotpath is not None:
        hp = run.hotpath
        lines.append(f"- 304 path: {fmt(hp.median((hp.chosen, 'counts', '304')), 0)} req/s per "
                     f"worker ({hp.chosen}) = {hp.ratio(hp.chosen):.2f}x the bare WSGI + Redis floor "
                     f"with HS256 tokens, {hp.ratio(hp.chosen, '304', ES256):.2f}x with ES256 tokens "
                     "from a JWKS.")
    if run.scaling is not None:
        sc = run.scaling
        heavy = next(p.label for p in sc.probes if p.memberships == 1_000)
        large = max(sc.sizes)
        bump = sc.bump_api.get(10_000)
        lines.append(f"- 200 path at 1,000 memberships, {large:,} messages: p99 "
                     f"{fmt(sc.http[large, heavy].p99, 1)} ms; a 10,000-user bump: p99 "
                     f"{fmt(bump.p99, 1) if bump else 'n/a'} ms.")
    if run.push is not None:
        pr = run.push
        lines.append(f"- Push: {fmt(pr.pushes_per_second, 0)} Web Push pushes/s per dispatcher "
                     f"process (encrypted and signed); p99 {fmt(pct(pr.latency_s, 99), 3)} s from "
                     f"a write's 201 to the push service at {fmt(pr.offered_per_second, 1)} messages/s.")
    if run.live is not None:
        from bench.live_report import requests_per_user_minute

        live = run.live
        lines.append(f"- Live: {sum(live.opened.values()):,} connections at "
                     f"{fmt(live.rss_kib_per_connection.get('all', float('nan')), 1)} KiB each; a "
                     f"write reaches its recipients' clients in p50 {fmt(pct(live.latency_ms, 50), 1)}"
                     f" / p99 {fmt(pct(live.latency_ms, 99), 1)} ms; "
                     f"{requests_per_user_minute(live):.2f} HTTP requests per user per minute "
                     f"(3-s polling: 20); {live.missed_final} missed final states.")
    return ["## Headline", "", *lines, "", f"Command: `{run.command}`", ""]


def write_results(run: Run, path: Path, chart: Path) -> None:
    """Write RESULTS.md."""
    lines = ["# counts: benchmark results", "",
             f"Written by `make bench` (bench/run.py); chart: [{chart.name}]({chart.name}).", "",
             *headline(run), *targets_section(run), *simulation_section(run), *cost_section(run),
             *search_section(run)]
    for p in run.passes:
        if p.profile:
            lines += profile_lines(f"Where the service's CPU goes in the {p.mode} pass (py-spy, "
                                   "last seconds)", p.profile)
    from bench.js_client import client_section
    from bench.live_report import live_section
    from bench.mentions import mentions_section

    lines += [*hotpath_section(run.hotpath), *live_section(run.live), *client_section(run.client),
              *scaling_section(run.scaling), *mentions_section(run.mentions),
              *topology_section(run.topology), *push_section(run.push), *expo_section(run.expo),
              *machine_section(run)]
    path.write_text("\n".join(lines) + "\n")
