"""`REDIS_URL` -> a redis-py client: the one place a client is built from the setting.

The web app (`ivr.events`, `ivr.store`, the login limiter), the `ivr` command and the RQ
worker (`workers.rq_settings`) all connect through `connect()`. The forms:

    redis://[[user]:password@]host[:port][/db][?option=value&...]
    rediss://[[user]:password@]host[:port][/db][?option=value&...]        TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N&option=value&...]
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?...]
    rediss+sentinel://...                          Sentinel, TLS to sentinels and servers

The first three are redis-py's own (`redis.Redis.from_url`). Options are redis-py's URL
options, parsed by redis-py, for every form: `socket_timeout`, `socket_connect_timeout`,
`health_check_interval`, ..., and for TLS `ssl_cert_reqs=required|optional|none`,
`ssl_ca_certs=/path/ca.pem`, `ssl_certfile`, `ssl_keyfile`, `ssl_check_hostname=false`.
An option in the URL wins over the one the code asks for.

Sentinel: the hosts are the sentinels (port 26379 when not given), `service` the name
they monitor (`sentinel monitor <service> ...`); user and password authenticate to the
Redis servers, `?sentinel_username=...&sentinel_password=...` to the sentinels when
they require it. Every connection asks a sentinel for the current master, so after a
failover the clients follow the new master on their next connection.

Redis Cluster is not a form here: RQ does not work on a cluster (see docs/design.md).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
SENTINEL_PORT = 26379
FORMS = ("redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel:// "
         "(see ivr/redis_url.py)")
# What a sentinel connection takes from the client's options (auth is its own).
_SENTINEL_OPTIONS = re.compile(r"^(socket_.*|retry|protocol|ssl|ssl_.*)$")


def fail_fast_options() -> dict:
    """The web's client options: a webhook must not wait on a sick Redis, it spools."""
    return {"socket_connect_timeout": 0.3, "socket_timeout": 0.5,
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 30}


def connect(url: str, *, fail_fast: bool = False, **options) -> redis.Redis:
    """A client for `url` (any form above); `options` are redis-py client options.

    `fail_fast` adds `fail_fast_options()`, for Sentinel to the sentinel connections
    too. Nothing connects yet; an unknown option or a malformed URL raises ValueError
    here, at start-up, rather than at the first command.
    """
    if fail_fast:
        options = {**fail_fast_options(), **options}
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        client = _sentinel_master(url, options)
    elif scheme in ("redis", "rediss", "unix"):
        client = redis.Redis.from_url(url, **options)
    else:
        raise ValueError(f"REDIS_URL must start with {FORMS}")
    _check_options(client.connection_pool)
    return client


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, dict, dict]:
    """(sentinels, service, server options, sentinel options) of a Sentinel URL."""
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    path, _, query = tail.partition("?")
    names = [unquote(p) for p in path.split("/") if p]
    sentinels = [_host_port(h) for h in hostlist.split(",") if h.strip()]
    if not sentinels or not 1 <= len(names) <= 2:
        raise ValueError("a Sentinel REDIS_URL is redis+sentinel://[[user]:password@]"
                         "host[:port][,host[:port]...]/service[/db][?options]")
    service = names[0]
    if len(names) == 2 and not names[1].isdigit():
        raise ValueError(f"the database after the Sentinel service name must be a "
                         f"number, not {names[1]!r}")
    # redis-py parses the rest (user, password, db, options) as for a plain URL.
    plain = (f"{SENTINEL_SCHEMES[scheme.lower()]}://{userinfo + at}sentinel/"
             f"{names[1] if len(names) == 2 else ''}" + (f"?{query}" if query else ""))
    server = parse_url(plain)
    server.pop("host", None)
    auth = {name: server.pop(f"sentinel_{name}") for name in ("username", "password")
            if f"sentinel_{name}" in server}
    if server.pop("connection_class", None) is SSLConnection:
        server["ssl"] = True  # SentinelConnectionPool picks its TLS connection class
    return sentinels, service, server, auth


def _sentinel_master(url: str, options: dict) -> redis.Redis:
    sentinels, service, server, auth = parse_sentinel(url)
    server = {**options, **server}
    sentinel_options = {k: v for k, v in server.items() if _SENTINEL_OPTIONS.match(k)}
    sentinel = Sentinel(sentinels, sentinel_kwargs={**sentinel_options, **auth})
    return sentinel.master_for(service, redis_class=redis.Redis, **server)


def _host_port(text: str) -> tuple[str, int]:
    parts = urlsplit(f"//{text.strip()}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad sentinel address {text!r}: {e}") from e
    if not parts.hostname:
        raise ValueError(f"bad sentinel address {text!r}")
    return parts.hostname, port or SENTINEL_PORT


def _check_options(pool: redis.ConnectionPool) -> None:
    """Build one connection object (no socket is opened): an option redis-py does not
    know (a typo in the URL, or a TLS option on a plain URL) fails here."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as e:
        raise ValueError(f"REDIS_URL has an option redis-py does not take: {e}") from e


def decoding(client: redis.Redis) -> redis.Redis:
    """A client on the same server(s) as `client`, with its options, that returns str."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": True}
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the pool's own proxy: the new pool makes one
        return redis.Redis(connection_pool=SentinelConnectionPool(
            pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class,
            is_master=pool.is_master, check_connection=pool.check_connection, **kwargs))
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))
