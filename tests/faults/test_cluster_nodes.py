"""Several web nodes on one Redis Cluster (README "Deploying"; REDIS_CLUSTER): a three-primary
cluster of our own, two gunicorn servers sharing it and the test database, every burst dealt
over both. The limits hold exactly across the servers, the flush bills exactly the calls
answered 2xx, and one primary killed takes only its own customers to the fail-open path: they
are counted in Postgres, the others stay exact in Redis, and once it is back (empty: no
persistence) its customers' counters are rebuilt from Postgres with nothing counted twice."""
from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from redis.cluster import ClusterNode, RedisCluster

from accounts.services import api_key_issue
from metering.connection import customer_key
from metering.usage_fields import month_counter_key
from plans.models import Plan
from tests.factories import CustomerFactory
from tests.redis_cluster import LocalRedisCluster
from tests.servers import Gunicorn, manage
from tests.servers import test_database_url as database_url  # not test_*: pytest would collect it

from .api_load import fire_at_once, hammer, wait_until_serving
from .settled import billed, free_key_short_of_its_cap

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]



class Site:
    """The cluster, the two servers on it, and the environment a child process needs to join them."""

    def __init__(self, cluster: LocalRedisCluster, servers: list[Gunicorn], env: dict) -> None:
        self.cluster, self.servers, self.env = cluster, servers, env

    def urls(self, path: str = "/v1/geocode?q=Paris") -> list[str]:
        return [f"{server.url}{path}" for server in self.servers]

    def settled(self, *customers) -> dict[int, int]:
        """Each customer's billed calls once the servers have sent what they answered, flushed by
        a process on the cluster (this test process's Redis is not the cluster)."""
        ids = [customer.pk for customer in customers]
        code = ("import json; from tests.faults.settled import billed_once_settled; "
                f"print(json.dumps({{i: billed_once_settled(i) for i in {ids!r}}}))")
        out = manage("shell", "-c", code, env=self.env)
        return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}

    def month_counter(self, customer) -> int | None:
        # Every node a seed: the one a test killed may be any of them.
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port) for port in self.cluster.ports])
        try:
            value = client.get(month_counter_key(customer_id=customer.pk, day=timezone.now().date()))
        finally:
            client.close()
        return None if value is None else int(value)


@pytest.fixture(scope="module")
def site(django_db_setup, tmp_path_factory):
    with LocalRedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        # A cluster cannot be Celery's broker: the servers keep this test run's plain Redis for it.
        env = {"REDIS_CLUSTER": "true", "REDIS_URL": ",".join(cluster.urls), "CELERY_BROKER_URL": settings.REDIS_URL,
               "DATABASE_URL": database_url()}
        with Gunicorn(workers=2, threads=8, env=env) as first, Gunicorn(workers=2, threads=8, env=env) as second:
            for server in (first, second):
                wait_until_serving(server)
            yield Site(cluster, [first, second], env)


def outcomes(answers) -> Counter:
    return Counter((a.status, a.code) for a in answers)


def per_minute_100() -> Plan:
    # Only the rate limit can refuse: a month far from its quota, no cap.
    return Plan.objects.create(slug="per-minute-100", name="100 a minute", price=Decimal("0"), included_calls=10**6,
                               overage_price=Decimal("0"), rate_per_minute=100, entitlements=["geocode"])


def test_130_at_once_over_two_servers_on_100_a_minute_accept_exactly_100_and_bill_them(site):
    customer = CustomerFactory(plan=per_minute_100())
    raw = api_key_issue(customer=customer, name="k").raw

    answers = fire_at_once(site.urls(), raw, 130)

    assert outcomes(answers) == {(200, ""): 100, (429, "rate_limited"): 30}
    assert site.settled(customer) == {customer.pk: 100}
    assert site.month_counter(customer) == 100


def test_free_at_995_calls_and_200_at_once_over_two_servers_accepts_exactly_5(site):
    customer, raw = free_key_short_of_its_cap(5)
    included = customer.plan.included_calls

    answers = fire_at_once(site.urls(), raw, 200)

    assert outcomes(answers) == {(200, ""): 5, (429, "quota_exceeded"): 195}
    assert site.settled(customer) == {customer.pk: included}
    assert site.month_counter(customer) == included


def customers_on_two_primaries(site: Site, plan: Plan) -> tuple:
    """Two customers of `plan` whose keys live on different primaries, and the first one's node."""
    customers = [CustomerFactory(plan=plan)]
    first_node = site.cluster.node_for(customer_key(customers[0].pk, "rl"))
    while site.cluster.node_for(customer_key(customers[-1].pk, "rl")) == first_node:
        customers.append(CustomerFactory(plan=plan))
    return customers[0], customers[-1], first_node


def test_a_killed_primary_fails_its_customers_open_into_postgres_and_is_reseeded_when_back(site):
    x, _, x_node = customers_on_two_primaries(site, per_minute_100())
    raw_x = api_key_issue(customer=x, name="k").raw

    # Before: 10 calls, metered in Redis and flushed, so the kill loses nothing billed.
    assert outcomes(hammer(site.urls(), raw_x, total=10, threads=4)) == {(200, ""): 10}
    assert site.settled(x) == {x.pk: 10}

    site.cluster.kill(x_node)
    x_down = hammer(site.urls(), raw_x, total=20, threads=4)
    # Every call answered, each counted in Postgres as it was accepted (no flush ran).
    assert outcomes(x_down) == {(200, ""): 20}
    assert billed(x) == 30

    site.cluster.restart(x_node)
    assert site.month_counter(x) is None  # it came back empty
    # Each server process notices the new server at its first contact: that call fails open, and
    # the process's recovery, at its next contact after the retry interval, resets X's counter for
    # a rebuild. Rounds of calls, each followed by that interval, until a rebuild has held.
    x_back = []
    deadline = time.monotonic() + 30
    while True:
        x_back += hammer(site.urls(), raw_x, total=10, threads=4)
        time.sleep(settings.REDIS_RETRY_SECONDS + 0.5)
        if len(x_back) >= 20 and site.month_counter(x) is not None:
            break
        assert time.monotonic() < deadline, "X's month counter was never rebuilt after the restart"
    assert outcomes(x_back) == {(200, ""): len(x_back)}

    # Nothing counted twice: Postgres bills exactly the calls answered 2xx, and the month counter,
    # rebuilt from Postgres after the primary came back, agrees with it.
    x_total = 10 + 20 + len(x_back)
    assert site.settled(x) == {x.pk: x_total}
    assert site.month_counter(x) == x_total


# One outage breaker per primary (core/redis.py): X's failures open the breaker of X's primary
# only, and its recovery republishes X's customers only, so Y never meets the dead node.
def test_a_killed_primary_leaves_the_customers_of_the_others_exact_in_redis(site):
    x, y, x_node = customers_on_two_primaries(site, per_minute_100())
    raw_x = api_key_issue(customer=x, name="k").raw
    raw_y = api_key_issue(customer=y, name="k").raw
    assert outcomes(hammer(site.urls(), raw_y, total=10, threads=4)) == {(200, ""): 10}
    assert site.settled(y) == {y.pk: 10}

    site.cluster.kill(x_node)
    try:
        # X's calls meet the dead primary in every server process (they fail open)...
        assert outcomes(hammer(site.urls(), raw_x, total=20, threads=4)) == {(200, ""): 20}
        # ...and Y, right after, is still held to exactly its limit (10 of its 100 taken) and
        # counted in Redis: Postgres has not moved, the month counter has.
        y_down = fire_at_once(site.urls(), raw_y, 130)
        assert outcomes(y_down) == {(200, ""): 90, (429, "rate_limited"): 40}
        assert billed(y) == 10
        assert site.month_counter(y) == 100
    finally:
        site.cluster.restart(x_node)
    assert site.settled(y) == {y.pk: 100}
    assert site.month_counter(y) == 100
