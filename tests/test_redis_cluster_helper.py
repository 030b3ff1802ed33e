"""tests/redis_cluster.py itself: three primaries serve every slot, a killed one takes only its
own keys away, and one restarted comes back serving its slots, empty."""
from __future__ import annotations

import socket

import pytest
from redis.cluster import RedisCluster

from tests.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.slow


def keys_on_each_node(cluster: LocalRedisCluster) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < cluster.SIZE:
        key = f"k{n}"
        found.setdefault(cluster.node_for(key), key)
        n += 1
    return [found[i] for i in range(cluster.SIZE)]


def test_kill_and_restart_one_primary(tmp_path):
    with LocalRedisCluster(tmp_path) as cluster:
        assert len(set(cluster.ports)) == 3 and cluster.url == cluster.urls[0]
        client = RedisCluster.from_url(cluster.url)
        keys = keys_on_each_node(cluster)
        for key in keys:
            client.set(key, "1")
        assert client.get(keys[1]) == b"1"

        cluster.kill(1)
        assert cluster.processes[1].poll() is not None
        assert client.get(keys[0]) == b"1" and client.get(keys[2]) == b"1"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", cluster.ports[1]), timeout=1)

        cluster.restart(1)
        fresh = RedisCluster.from_url(cluster.urls[2])
        assert fresh.get(keys[1]) is None  # no persistence: it came back empty
        assert fresh.get(keys[0]) == b"1"
        fresh.set(keys[1], "2")
        assert cluster.node_for(keys[1]) == 1
        client.close()
        fresh.close()
    assert all(process.poll() is not None for process in cluster.processes)
