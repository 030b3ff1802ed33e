"""The metering Lua scripts and key names, over the project's shared Redis client.

The client, the outage errors and the outage state machine live in core.redis; they are
re-exported here under the names the metering code uses.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from core.redis import (  # noqa: F401 - re-exported
    REDIS_UNAVAILABLE as UNAVAILABLE,
    on_recovery,
    outage_note,
    outage_note_first,
    outage_notes_take,
    redis_defer_to_recovery,
    redis_client,
    redis_cluster_client_new,
    redis_is_marked_down,
    redis_mark_down,
    redis_mark_up,
    redis_outage_seen,
    redis_recover_owed,
    redis_recovered,
    redis_recovery_due,
    redis_usable,
)


LUA_DIR = Path(__file__).parent / "lua"
# A line `-- include window.lua` in a script stands for that file's text: the pieces two scripts
# share (the sliding window) are written once and still run inside each script's one EVALSHA.
INCLUDE = re.compile(r"^-- include ([a-z_]+\.lua)$", re.MULTILINE)


def script_source(name: str) -> str:
    """The Lua text of `name`, its includes put in place (one level: an included file includes
    nothing)."""
    return INCLUDE.sub(lambda m: (LUA_DIR / m.group(1)).read_text().rstrip("\n"),
                       (LUA_DIR / f"{name}.lua").read_text())


@cache
def script(name: str):
    """A registered Lua script: EVALSHA, reloaded by redis-py on NOSCRIPT (for pipelines)."""
    return redis_client().register_script(script_source(name))


def scripts_ready(client, *names: str) -> None:
    """Call before running scripts `names` in a pipeline of `client`. redis-py loads the scripts of a plain
    pipeline itself (SCRIPT EXISTS, then SCRIPT LOAD of the missing) when it runs; a cluster
    pipeline only sends EVALSHA and leaves NOSCRIPT to its caller, so here the same is done on
    every primary (both commands go to all of them) before the pipeline runs."""
    if not isinstance(client, RedisCluster):
        return
    scripts = [script(name) for name in names]
    for lua, exists in zip(scripts, client.script_exists(*(lua.sha for lua in scripts))):
        if not exists:
            client.script_load(lua.script)


def run_script(client: redis.Redis, name: str, keys: tuple, args: tuple):
    """EVALSHA straight on the client; on NOSCRIPT (a restarted or flushed Redis) load it once.
    On a cluster the EVALSHA goes to the node of the first key (all of a call's keys share one
    customer's slot) and SCRIPT LOAD to every primary."""
    lua = script(name)
    try:
        return client.evalsha(lua.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        client.script_load(lua.script)
        return client.evalsha(lua.sha, len(keys), *keys, *args)


def customer_key(customer_id: int, suffix: str) -> str:
    # The {hash tag} keeps all of one customer's keys in one Cluster slot.
    return f"tb:{{{customer_id}}}:{suffix}"
