"""Redis Cluster mode (REDIS_CLUSTER=true): the project's one Redis client becomes a
`redis.cluster.RedisCluster`, built here from REDIS_URL (one node, or a comma-separated list of
seed nodes; a cluster has database 0 only, so a database number in the URL is ignored).

Django's cache reaches it too: core.redis's `ClusterConnectionFactory`, the django-redis connection
factory of the "default" cache in cluster mode, hands django-redis the same process-wide client,
so `redis_client()` and `django.core.cache` share one set of per-node pools.

Every key the app writes carries one customer's {hash tag} (or is a single key), so a script
or a MULTI never spans two slots; pipelines without MULTI are split per node by redis-py.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.retry import Retry

_lock = threading.Lock()
_shared: RedisCluster | None = None


_enabled: bool | None = None  # settings.REDIS_CLUSTER, read once: the hot path asks several times a call


def cluster_enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = bool(getattr(settings, "REDIS_CLUSTER", False))
    return _enabled


@receiver(setting_changed)
def _enabled_forget(*, setting: str, **kwargs) -> None:
    global _enabled
    if setting == "REDIS_CLUSTER":
        _enabled = None


def cluster_seeds(urls: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The seed nodes of a comma-separated list of redis:// or rediss:// URLs, and the
    connection options (credentials, TLS) of the first."""
    nodes, options = [], {}
    for index, url in enumerate(u.strip() for u in urls.split(",") if u.strip()):
        parsed = parse_url(url)
        nodes.append(ClusterNode(parsed.get("host", "127.0.0.1"), int(parsed.get("port", 6379))))
        if index == 0:
            options = {k: parsed[k] for k in ("username", "password") if parsed.get(k)}
            if parsed.get("connection_class") is redis.connection.SSLConnection:
                options["ssl"] = True
    if not nodes:
        raise ValueError("REDIS_URL names no Redis Cluster node")
    return nodes, options


def cluster_client_new(*, on_connect: Callable[[Any], None]) -> RedisCluster:
    """A cluster client with pools of its own and the cache's timeouts; `on_connect` runs on
    every node's new connections after RedisCluster's own setup (core.redis checks the server's
    run id there, to notice a restart)."""
    cache_options = settings.CACHES["default"].get("OPTIONS", {})
    nodes, options = cluster_seeds(settings.REDIS_URL)
    pool_kwargs = cache_options.get("CONNECTION_POOL_KWARGS", {})
    return RedisCluster(
        startup_nodes=nodes,
        socket_connect_timeout=cache_options.get("SOCKET_CONNECT_TIMEOUT"),
        socket_timeout=cache_options.get("SOCKET_TIMEOUT"),
        health_check_interval=pool_kwargs.get("health_check_interval", 0),
        # One retry, at once, after the slot map is refreshed: enough to follow a failover, while
        # a dead primary costs its callers one connect timeout each, not redis-py's default
        # seconds of backoff (they fail open; README "The metered API").
        retry=Retry(NoBackoff(), 1),
        redis_connect_func=on_connect,
        **options,
    )


def cluster_client(*, on_connect: Callable[[Any], None]) -> RedisCluster:
    """The process-wide cluster client (thread-safe: its per-node pools are)."""
    global _shared
    if _shared is None:
        with _lock:
            if _shared is None:
                _shared = cluster_client_new(on_connect=on_connect)
    return _shared


def cluster_client_if_made() -> RedisCluster | None:
    """The process-wide client if one was made (its slot map names a key's primary without
    network I/O: core.redis's per-node breakers), else None; never connects."""
    return _shared


def cluster_client_reset() -> None:
    """Forget the process-wide client and close its connections (tests that switch modes, or a
    forked child that must not share its parent's sockets)."""
    global _shared
    with _lock:
        shared, _shared = _shared, None
    if shared is not None:
        shared.close()
