"""The metering Redis connection, its Lua scripts, and a small circuit breaker."""
from __future__ import annotations

import time
from functools import cache
from pathlib import Path

import redis
from django.conf import settings
from django_redis import get_redis_connection

# Errors that mean "Redis is not there", as opposed to a bug in a script or a command.
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)

_down_until = 0.0


def redis_client() -> redis.Redis:
    return get_redis_connection("default")


def redis_is_marked_down() -> bool:
    return time.monotonic() < _down_until


def redis_mark_down() -> None:
    """Skip Redis for a moment: one failed connect per interval, not one per request."""
    global _down_until
    _down_until = time.monotonic() + settings.REDIS_RETRY_SECONDS


def redis_mark_up() -> None:
    global _down_until
    _down_until = 0.0


@cache
def script(name: str):
    """A registered Lua script: EVALSHA, reloaded by redis-py on NOSCRIPT (for pipelines)."""
    source = (Path(__file__).parent / "lua" / f"{name}.lua").read_text()
    return redis_client().register_script(source)


def run_script(client: redis.Redis, name: str, keys: tuple, args: tuple):
    """EVALSHA straight on the client; on NOSCRIPT (a restarted or flushed Redis) load it once."""
    lua = script(name)
    try:
        return client.evalsha(lua.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        client.script_load(lua.script)
        return client.evalsha(lua.sha, len(keys), *keys, *args)


def customer_key(customer_id: int, suffix: str) -> str:
    # The {hash tag} keeps all of one customer's keys in one Cluster slot.
    return f"tb:{{{customer_id}}}:{suffix}"
