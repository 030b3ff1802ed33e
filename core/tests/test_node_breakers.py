"""The outage breakers of core.redis on a real three-primary Redis Cluster: one per primary, so a
primary that is down (or marked down) takes only its own customers to the fail-open path, its
notes wait for its own recovery, and the recovery of one never touches another. On a single
Redis the key is ignored: one breaker per process, as before."""
from __future__ import annotations

import time

import pytest

from core import redis as core_redis
from core.redis import (
    on_recovery, outage_note, outage_note_first, outage_notes_take, redis_client, redis_is_marked_down,
    redis_mark_down, redis_outage_seen, redis_recovered, redis_recovering, redis_state_reset,
)
from metering import batcher, connection
from metering.batcher import commit_later, meter_commits_send
from metering.services import UNPUBLISHED, customer_config_bump
from metering.usage_fields import open_calls_key
from tests.factories import CustomerFactory
from tests.redis_cluster import app_on_cluster

pytestmark = pytest.mark.django_db

KIND = "tests.node_breakers"


@pytest.fixture
def cluster(local_cluster, settings):
    """This test's settings in cluster mode, on a fresh client, fresh breakers, an empty cluster."""
    with app_on_cluster(settings, local_cluster):  # every node a seed: one may be killed
        yield local_cluster


@pytest.fixture
def recoveries():
    """A recovery callback recording, per run, the breaker it ran for and the KIND notes it took."""
    runs: list[tuple[str, set]] = []

    def record() -> None:
        runs.append((redis_recovering().name, outage_notes_take(KIND)))

    on_recovery(record)
    yield runs
    core_redis._callbacks.remove(record)


def keys_on_two_primaries(cluster) -> tuple[str, str, int, int]:
    """Two customers' keys served by different primaries, and those primaries' indexes."""
    first = connection.customer_key(1, "ver")
    first_node = cluster.node_for(first)
    customer_id = 2
    while cluster.node_for(connection.customer_key(customer_id, "ver")) == first_node:
        customer_id += 1
    second = connection.customer_key(customer_id, "ver")
    return first, second, first_node, cluster.node_for(second)


def test_a_primary_marked_down_leaves_the_breakers_of_the_others_closed(cluster):
    a, b, a_node, _ = keys_on_two_primaries(cluster)

    redis_mark_down(a)

    assert redis_is_marked_down(a) and redis_outage_seen(a)
    assert not redis_is_marked_down(b) and not redis_outage_seen(b)
    assert redis_is_marked_down()  # without a key: is any primary down?
    # Every key of the same primary shares its breaker, whatever its customer.
    same_node = next(connection.customer_key(i, "ver") for i in range(100, 10_000)
                     if cluster.node_for(connection.customer_key(i, "ver")) == a_node)
    assert redis_is_marked_down(same_node)


def test_the_breaker_is_named_by_the_primary_serving_the_keys_slot(cluster):
    a, _, a_node, _ = keys_on_two_primaries(cluster)
    redis_mark_down(a)
    assert [b.name for b in core_redis.redis_breakers_down()] == [f"127.0.0.1:{cluster.ports[a_node]}"]


def test_notes_are_kept_per_primary_and_a_recovery_takes_its_own_only(cluster, recoveries):
    a, b, _, _ = keys_on_two_primaries(cluster)
    redis_mark_down(a)
    redis_mark_down(b)
    outage_note(KIND, [1, 2], a)
    outage_note(KIND, [3], b)
    assert outage_note_first(KIND, 4, a) is True
    assert outage_note_first(KIND, 4, a) is False
    assert outage_note_first(KIND, 4, b) is True  # b's notes are its own

    assert redis_recovered(a) is True

    a_name = core_redis.redis_breaker(a).name
    assert recoveries == [(a_name, {1, 2, 4})]
    assert not redis_outage_seen(a)
    assert redis_outage_seen(b)  # still owed: its recovery has not run
    assert redis_recovered(b) is True
    assert recoveries[1] == (core_redis.redis_breaker(b).name, {3, 4})


def test_a_recovery_that_meets_its_primary_gone_again_keeps_only_that_primarys_notes(cluster, recoveries):
    a, b, _, _ = keys_on_two_primaries(cluster)

    def fail_for_a() -> None:
        if redis_recovering() is core_redis.redis_breaker(a):
            outage_note(KIND, [9])  # no key, in a recovery: noted for the recovering primary
            raise connection.UNAVAILABLE[0]("gone again")

    on_recovery(fail_for_a)
    try:
        redis_mark_down(a)
        redis_mark_down(b)
        assert redis_recovered(a) is False
        assert redis_is_marked_down(a) and redis_outage_seen(a)
        assert redis_recovered(b) is True
    finally:
        core_redis._callbacks.remove(fail_for_a)
    assert outage_notes_take(KIND, a) == {9}
    assert outage_notes_take(KIND, b) == set()


def test_a_dead_primary_holds_back_only_its_own_customers_versions_and_commits(cluster, settings,
                                                                                django_capture_on_commit_callbacks):
    settings.REDIS_RETRY_SECONDS = 60
    live, dead = CustomerFactory(), CustomerFactory()
    while cluster.node_for(connection.customer_key(dead.pk, "ver")) == \
            cluster.node_for(connection.customer_key(live.pk, "ver")):
        dead = CustomerFactory()
    live_key, dead_key = connection.customer_key(live.pk, "ver"), connection.customer_key(dead.pk, "ver")
    dead_node = cluster.node_for(dead_key)
    client = redis_client()
    client.set(live_key, 1)  # this process has reached both primaries
    client.set(dead_key, 1)
    cluster.kill(dead_node)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            customer_config_bump(customer_ids=[live.pk, dead.pk])
        # The live customer's version is in Redis; the dead one's waits for its primary's recovery.
        live.refresh_from_db()
        assert int(client.get(live_key)) == live.config_version
        assert redis_is_marked_down(dead_key) and not redis_is_marked_down(live_key)
        assert outage_notes_take(UNPUBLISHED, live_key) == set()
        assert outage_notes_take(UNPUBLISHED, dead_key) == {dead.pk}

        # The committer: the live primary's commit is billed, the dead one's is kept for later.
        day = live.created_at.date()
        client.zadd(open_calls_key(customer_id=live.pk, day=day), {"m1": 1})  # a call answered 2xx
        commit_later(customer_id=live.pk, day=day, open_member="m1", field="f", key_id=1)
        commit_later(customer_id=dead.pk, day=day, open_member="m2", field="f", key_id=2)
        meter_commits_send()
        assert until(lambda: client.hgetall(connection.customer_key(live.pk, "pending")))
        # (the committer thread may hold the queue for a moment while it sends too)
        assert until(lambda: [pending for _, pending in batcher._commits] ==
                     [connection.customer_key(dead.pk, "pending")])

        # The live primary's own outage: its version waits for its recovery, which then publishes
        # it while the dead primary is still dead (and still owes its own).
        redis_mark_down(live_key)
        with django_capture_on_commit_callbacks(execute=True):
            customer_config_bump(customer_ids=[live.pk])
        live.refresh_from_db()
        assert int(client.get(live_key)) < live.config_version
        assert redis_recovered(live_key) is True
        assert int(client.get(live_key)) == live.config_version
        assert redis_outage_seen(dead_key) and not redis_outage_seen(live_key)
    finally:
        cluster.restart(dead_node)
        with batcher._commits_lock:
            batcher._commits.clear()
            batcher._commits_queued = 0


def until(condition, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_on_a_single_redis_every_key_shares_the_one_breaker(settings):
    settings.REDIS_CLUSTER = False
    redis_state_reset()
    try:
        redis_mark_down(connection.customer_key(1, "ver"))
        assert redis_is_marked_down(connection.customer_key(2, "ver"))
        assert redis_is_marked_down()
        outage_note(KIND, [1], connection.customer_key(1, "ver"))
        outage_note(KIND, [2])
        assert outage_notes_take(KIND, connection.customer_key(3, "ver")) == {1, 2}
        assert core_redis.redis_breaker("anything") is core_redis.health
    finally:
        redis_state_reset()


def test_a_breaker_whose_slots_another_primary_took_recovers_at_the_next_contact(cluster, recoveries):
    a, b, _, _ = keys_on_two_primaries(cluster)
    client = redis_client()
    # As after a failover: a's slot was last seen served by a primary that is gone, which owes a
    # recovery; the slot map now names another.
    gone = core_redis._node("127.0.0.1:1")
    gone.mark_down()
    gone.note(KIND, [7])
    core_redis._slot_owners[client.keyslot(a)] = gone.name
    assert core_redis.redis_breaker(a) is not gone  # resolved through the slot map

    assert redis_recovered(b) is True

    assert recoveries == [(gone.name, {7})]
    assert not gone.outage_seen()
