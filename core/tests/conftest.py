from __future__ import annotations

import pytest

from tests.redis_cluster import LocalRedisCluster


@pytest.fixture(scope="module")
def local_cluster():
    """A three-primary Redis Cluster of the bundled binaries, for one test module."""
    with LocalRedisCluster() as local:
        yield local
