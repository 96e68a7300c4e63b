"""How settings are read from the environment: the field a setting is declared with, the loader
that fills a section from the environment, and the parsers that turn a variable's text into a
checked value (or a SettingsError naming the variable, never echoing a secret).

REDIS_URL is parsed here too, without redis-py: gunicorn's master reads the settings, and must
not import what the gevent workers patch after fork.
"""

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg2.extensions

T = TypeVar("T")


class SettingsError(RuntimeError):
    """A setting that cannot be used; the message names its variable and never a secret."""


class _Unset:
    """What a parser returns for an empty value that means "the default"."""


UNSET = _Unset()
Parser = Callable[[str, str], Any]  # (raw value, variable name) -> value, or UNSET


def setting(env: str, default: Any, doc: str, parse: Parser) -> Any:
    """A field read from the environment variable `env` with `parse`; `default` when unset."""
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


def load_section(section: type[T], environ: Mapping[str, str]) -> T:
    """A section dataclass with every setting read from `environ` (its checks run as it is built)."""
    values = {}
    for each in fields(section):  # type: ignore[arg-type]
        meta = each.metadata
        if "env" not in meta:
            continue
        raw = environ.get(meta["env"])
        value = UNSET if raw is None else meta["parse"](raw, meta["env"])
        values[each.name] = each.default if value is UNSET else value
    return section(**values)


def declared(section: type) -> list[tuple[str, Any, str]]:
    """(variable, default, meaning) of each setting a section declares, in order."""
    return [(each.metadata["env"], each.default, each.metadata["doc"])
            for each in fields(section) if "env" in each.metadata]


# --- parsers ----------------------------------------------------------------------------------

def text(raw: str, name: str) -> str | None:
    """A string; empty is None."""
    return raw.strip() or None


def text_or_default(raw: str, name: str) -> str | _Unset:
    """A string; empty is the default."""
    return raw.strip() or UNSET


def words(raw: str, name: str) -> tuple[str, ...] | _Unset:
    """A comma-separated list; empty is the default."""
    found = tuple(word.strip() for word in raw.split(",") if word.strip())
    return found or UNSET


def number(kind: type, minimum: float | None = None, above: float | None = None) -> Parser:
    """An int or float (empty: the default), at least `minimum` or more than `above`."""
    def parse(raw: str, name: str) -> Any:
        if not raw.strip():
            return UNSET
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"{name} must be a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
        if above is not None and value <= above:
            raise SettingsError(f"{name} must be more than {above}, got {raw!r}")
        return value
    return parse


def choice(*allowed: str) -> Parser:
    """One of `allowed` (empty: the default)."""
    def parse(raw: str, name: str) -> str | _Unset:
        value = raw.strip()
        if not value:
            return UNSET
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value
    return parse


def postgres_urls(raw: str, name: str) -> tuple[str, ...]:
    """A comma-separated list of postgresql:// URLs, each checked (never echoed: a password)."""
    urls = tuple(url.strip() for url in raw.split(",") if url.strip())
    for url in urls:
        try:
            if not url.startswith(("postgresql://", "postgres://")):
                raise psycopg2.ProgrammingError("not a postgresql:// URL")
            psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError as error:
            raise SettingsError(f"{name} holds a URL that is not a Postgres URL: {error}") from None
    return urls


# A Postgres name as `schema.function`: each part a plain identifier (folded to lower case, as
# Postgres folds it) or a "quoted" one (kept as written, "" standing for one quote).
_NAME_PART = r'(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))'
_QUALIFIED_NAME = re.compile(_NAME_PART + r"\." + _NAME_PART)


def function_name(raw: str, name: str) -> tuple[str, str] | None:
    """`schema.function` as the (schema, function) Postgres means by it; empty is None."""
    if not raw.strip():
        return None
    found = _QUALIFIED_NAME.fullmatch(raw.strip())
    if found is None:
        raise SettingsError(f"{name} must name a function with its schema, like "
                            f"public.counts_unread; got {raw!r}")
    quoted_schema, plain_schema, quoted_name, plain_name = found.groups()
    schema = quoted_schema.replace('""', '"') if quoted_schema else plain_schema.lower()
    function = quoted_name.replace('""', '"') if quoted_name else plain_name.lower()
    return schema, function


def https_url(raw: str, name: str) -> str | None:
    """An https URL, or http to a loopback host (keys or tokens fetched over plain http from
    elsewhere can be swapped by anyone on the path); empty is None."""
    url = raw.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an https URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise SettingsError(f"{name} must be https: what is fetched over plain http can be swapped "
                            f"by anyone on the path (http is allowed only to localhost), got {url!r}")
    return url


def is_loopback(host: str) -> bool:
    """localhost, or an address in 127.0.0.0/8 or ::1 (no name lookup: it must be evident)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- Redis topology: parsed here, without redis-py (the master must not import it) ------------

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}


@dataclass(frozen=True)
class RedisTopology:
    """What a REDIS_URL names: one server, a Sentinel-managed primary, or a Cluster."""

    kind: str  # "single", "sentinel" or "cluster"
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or the cluster's startup nodes
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    service: str | None = None  # the primary's name at the sentinels
    db: int = 0
    tls: bool = False


def parse_redis_url(url: str) -> RedisTopology:
    """The topology a REDIS_URL names; ValueError, saying what is wrong, for a bad one."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError("REDIS_URL must start with a scheme, such as redis://")
    if scheme in SINGLE_SCHEMES:
        _check_single(url)
        return RedisTopology("single", url, tls=scheme == "rediss")
    kind = "sentinel" if scheme in SENTINEL_SCHEMES else "cluster" if scheme in CLUSTER_SCHEMES else None
    if kind is None:
        raise ValueError(f"REDIS_URL scheme {scheme!r} is not one of "
                         f"{', '.join(SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES)}")
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = tuple(_host_port(node, DEFAULT_PORTS[kind]) for node in hosts.split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if set(query) - {"sentinel_password"} or (query and kind == "cluster"):
        raise ValueError(f"REDIS_URL: unknown query parameters {sorted(query)} for {scheme}://")
    topology = RedisTopology(kind, url, nodes, unquote(username) or None,
                             unquote(password) or None, query.get("sentinel_password"),
                             tls=scheme.startswith("rediss"))
    if kind == "cluster":
        if path:
            raise ValueError("REDIS_URL: a redis+cluster:// URL has no path (a Cluster has no db)")
        return topology
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("REDIS_URL: a redis+sentinel:// URL ends in /<service_name>[/<db>], "
                         f"got path {parts.path!r}")
    return replace(topology, service=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0)


def _check_single(url: str) -> None:
    """What redis-py's from_url would refuse in a redis://, rediss:// or unix:// URL."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("REDIS_URL: the port is not a number") from None
    db = parse_qs(parts.query).get("db", [""])[-1] or parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"REDIS_URL: the database must be a number, got {db!r}")


def _host_port(node: str, default_port: int) -> tuple[str, int]:
    """("host", port) from "host[:port]" or "[v6]:port"; ValueError if it is not one."""
    host, _, port = node.rpartition(":") if not node.endswith("]") else (node, "", "")
    if not host:
        host, port = node, ""
    host = host.strip("[]")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"REDIS_URL: {node!r} is not host:port")
    return host, int(port) if port else default_port


DEFAULT_REDIS = parse_redis_url("redis://127.0.0.1:6379/0")


def redis_url(raw: str, name: str) -> RedisTopology | _Unset:
    """A REDIS_URL in any topology (empty: the default)."""
    if not raw.strip():
        return UNSET
    try:
        return parse_redis_url(raw.strip())
    except ValueError as error:
        raise SettingsError(str(error)) from None
