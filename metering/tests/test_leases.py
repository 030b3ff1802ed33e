"""Quota leases (decisions "Quota leases"): the scripts through the real Redis, then the meter.

Far from every limit a worker takes a block of calls in one script and admits them without Redis;
every exactness promise holds: never over a limit, billing follows the answer, a dead worker's
block is released unbilled, a config change stops admission within METERING_LEASE_MS.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from multiprocessing import get_context

import pytest
import redis as redis_py
from django.conf import settings as django_settings
from django.utils import timezone
from django_redis import get_redis_connection
from rest_framework import exceptions

from accounts.services import api_key_issue, api_key_revoke
from metering import connection, leases
from metering.batcher import meter_commits_send, meter_exit
from metering.keyconfig import key_config_get
from metering.meter import Outcome, meter_call, meter_settle, utc_today
from metering.permissions import access_check
from metering.services import usage_flush, usage_limits_set
from metering.usage_fields import (
    month_counter_key, open_calls_batch, open_calls_key, usage_batch_parse, usage_field,
)
from plans.models import Plan
from tests.factories import CustomerFactory

from .leases_support import LEASE_MS, lease_script, lua_keys, places, redis_now_ms

FIELD = "d|2026-12-06|geocode|7"
CID = 9_000_001


@pytest.fixture
def r():
    client = get_redis_connection("default")
    client.set(lua_keys(CID)[3], 1)  # config version 1
    client.set(lua_keys(CID)[1], 0)  # month counter
    return client


def close_script(client, *, member: str, units: int, admitted: int, billed: int, released: int, residual: str = "",
                 first_close: bool = True, moved: tuple = ()) -> int:
    rl, month, opened, _, leased = lua_keys(CID)
    keys = (opened, month, connection.customer_key(CID, "pending"), rl, leased)
    back = released + (units - admitted if first_close else 0)
    args = (3600, f"{FIELD}#{member}*{units}", f"{member}*{units}" if first_close else "", billed, back, member,
            admitted if first_close else 0, units if first_close else 0, FIELD, "t|7", residual, *moved)
    return connection.run_script(client, "lease_close", keys, args)


def pending_calls(client, cid: int = CID) -> int:
    return sum(usage_batch_parse(client.hgetall(connection.customer_key(cid, "pending"))).calls.values())


# --- the scripts ---


def test_a_lease_holds_at_most_one_percent_of_the_minute_across_the_customers_leases(r):
    first = lease_script(r, CID, member="a:1", limit=1_000, wanted=256)
    second = lease_script(r, CID, member="a:2", limit=1_000, wanted=256)

    assert first[:6] == [0, 1_000, 990, 60_000 + LEASE_MS, 10, 10]
    # 10 outstanding already: the second call is metered alone, exactly as meter.lua does.
    assert len(second) == 5 and second[:3] == [0, 1_000, 989] and second[4] == 11
    assert r.zcard(lua_keys(CID)[0]) == 11
    assert sorted(r.zrange(lua_keys(CID)[2], 0, -1)) == [f"{FIELD}#a:1*10".encode(), f"{FIELD}#a:2".encode()]


def test_a_leases_window_places_are_scored_one_lease_span_ahead(r):
    before = redis_now_ms(r)
    lease_script(r, CID, member="a:1", limit=100_000, wanted=4)
    after = redis_now_ms(r)

    scores = [score for _, score in r.zrange(lua_keys(CID)[0], 0, -1, withscores=True)]
    assert len(scores) == 4 and all(before + LEASE_MS <= s <= after + LEASE_MS for s in scores)
    assert r.pttl(lua_keys(CID)[0]) > 60_000


def test_outstanding_leases_stop_counting_once_expired(r):
    lease_script(r, CID, member="a:1", limit=1_000, wanted=256, lease_ms=20)
    time.sleep(0.05)  # the lease's outstanding entry lives two lease spans
    assert lease_script(r, CID, member="a:2", limit=1_000, wanted=256, lease_ms=20)[5] == 10


@pytest.mark.parametrize("month, cap_args, granted", [
    (0, {"included": 1_000, "hard_cap": 1}, 10),
    (800, {"included": 1_000, "hard_cap": 1}, 2),
    (995, {"included": 1_000, "hard_cap": 1}, None),  # 5 left: each call alone
    (0, {"ceiling": 500}, 5),
    (399, {"ceiling": 500}, None),
    (0, {"alerts": "80,100"}, 79),  # never spans an alert threshold
    (78, {"alerts": "80,100"}, None),  # the call reaching 80 is metered alone
])
def test_a_lease_takes_at_most_one_percent_of_the_room_under_a_cap(r, month, cap_args, granted):
    r.set(lua_keys(CID)[1], month)
    reply = lease_script(r, CID, member="a:1", limit=100_000, wanted=256, **cap_args)
    assert reply[0] == Outcome.OK
    assert (reply[5] if len(reply) == 7 else None) == granted
    assert int(r.get(lua_keys(CID)[1])) == month + (granted or 1)


def test_a_newer_config_version_refuses_a_lease(r):
    r.set(lua_keys(CID)[3], 2)
    assert lease_script(r, CID, member="a:1", version=1, wanted=8) == [-1, b"2"]
    assert r.zcard(lua_keys(CID)[0]) == 0 and int(r.get(lua_keys(CID)[1])) == 0


def test_closing_bills_exactly_the_2xx_and_gives_back_the_rest(r):
    lease_script(r, CID, member="a:1", limit=100_000, wanted=10)
    # 6 admitted: 4 answered 2xx, 2 not; 4 unused.
    assert close_script(r, member="a:1", units=10, admitted=6, billed=4, released=2) == 4

    assert pending_calls(r) == 4
    assert int(r.get(lua_keys(CID)[1])) == 4
    assert places(r, CID) == [f"a:1:{i}" for i in range(6)]  # unused places left the window
    assert r.zcard(lua_keys(CID)[2]) == 0 and r.zcard(lua_keys(CID)[4]) == 0


def test_closing_moves_the_used_places_back_to_their_calls_admission(r):
    granted_at = lease_script(r, CID, member="a:1", limit=100_000, wanted=10)[6]
    close_script(r, member="a:1", units=10, admitted=3, billed=3, released=0, moved=(granted_at, 1, 40, 300))
    scores = dict(r.zrange(lua_keys(CID)[0], 0, -1, withscores=True))
    # Never later than the lease's end: a place only moves back.
    assert scores == {b"a:1:0": granted_at + 1, b"a:1:1": granted_at + 40, b"a:1:2": granted_at + LEASE_MS}


def test_calls_still_running_at_the_close_stay_open_under_a_residual(r):
    lease_script(r, CID, member="a:1", limit=100_000, wanted=10)
    close_script(r, member="a:1", units=10, admitted=6, billed=3, released=1, residual=f"{FIELD}#a:1.1*2")
    assert r.zrange(lua_keys(CID)[2], 0, -1) == [f"{FIELD}#a:1.1*2".encode()]
    assert int(r.get(lua_keys(CID)[1])) == 5  # 3 billed + 2 running

    rl, month, opened, _, leased = lua_keys(CID)
    keys = (opened, month, connection.customer_key(CID, "pending"), rl, leased)
    connection.run_script(r, "lease_close", keys, (3600, f"{FIELD}#a:1.1*2", "", 1, 1, "a:1", 0, 0, FIELD, "t|7", ""))
    assert pending_calls(r) == 4 and int(r.get(month)) == 4 and r.zcard(opened) == 0


def test_a_lease_released_by_the_flush_bills_nothing_when_it_closes(r):
    lease_script(r, CID, member="a:1", limit=100_000, wanted=10)
    time.sleep(0.002)
    assert connection.run_script(r, "open_expire", lua_keys(CID)[2:0:-1], (0,)) == 10  # all its units
    assert int(r.get(lua_keys(CID)[1])) == 0

    assert close_script(r, member="a:1", units=10, admitted=5, billed=5, released=0) == -1
    assert pending_calls(r) == 0 and int(r.get(lua_keys(CID)[1])) == 0
    assert places(r, CID) == [f"a:1:{i}" for i in range(5)]  # its calls were admitted: they keep their places


def test_the_month_rebuild_counts_a_leases_units(r):
    day = timezone.now().date()
    opened = open_calls_key(customer_id=CID, day=day)
    r.zadd(opened, {f"{FIELD}#a:1*10": 1, f"{FIELD}#b:1": 2})
    keys = (month_counter_key(customer_id=CID, day=day), connection.customer_key(CID, "pending"),
            connection.customer_key(CID, "inflight"), opened, connection.customer_key(CID, "flushgen"),
            connection.customer_key(CID, "ver"))
    reply = connection.run_script(r, "month_seed", keys, (7, "0", "", 0, f"d|{day:%Y-%m}-", 3600, 1, 3600))
    assert reply == [1, 18]
    assert open_calls_batch([f"{FIELD}#a:1*10".encode(), f"{FIELD}#b:1".encode()]) == {FIELD: 11}


# --- the meter ---


def roomy_plan(**fields) -> Plan:
    values = dict(slug="roomy", name="Roomy", price=Decimal("100.00"), included_calls=10_000_000,
                  overage_price=Decimal("0.001"), rate_per_minute=100_000, entitlements=["geocode", "text"])
    return Plan.objects.create(**{**values, **fields})


def call(raw: str, status: int = 200):
    config = key_config_get(raw)
    result = meter_call(config=config, raw_key=raw, product="geocode",
                        revalidate=lambda c: access_check(c, "geocode", raw_key=raw))
    if result.allowed:
        meter_settle(result=result, status_code=status)
    return result


def state(customer_id: int) -> dict:
    client = get_redis_connection("default")
    day = timezone.now().date()
    return {
        "billed": pending_calls(client, customer_id),
        "month": int(client.get(month_counter_key(customer_id=customer_id, day=day)) or 0),
        "window": client.zcard(connection.customer_key(customer_id, "rl")),
        "open": client.zcard(open_calls_key(customer_id=customer_id, day=day)),
        "leases": client.zcard(connection.customer_key(customer_id, "leases")),
    }


def this_threads_commands(monkeypatch) -> list:
    """The commands this thread sends from now on: a call's request path (the committer thread
    and the monitor connection send theirs from other threads)."""
    sent: list = []
    original = redis_py.connection.AbstractConnection.send_command
    me = threading.get_ident()

    def counting(self, *args, **kwargs):
        if threading.get_ident() == me:
            sent.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis_py.connection.AbstractConnection, "send_command", counting)
    return sent


class Monitor:
    """Every command clients send to the test database, as Redis itself reports them (MONITOR),
    commands run inside scripts left out."""

    def __init__(self):
        self.client = redis_py.Redis.from_url(django_settings.REDIS_URL)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.commands: list[str] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def _listen(self):
        with self.client.monitor() as monitor:
            self.ready.set()
            for event in monitor.listen():
                if event["command"] == "ECHO monitor-stop":
                    return
                if event["db"] == self.db and event.get("client_type") != "lua":
                    self.commands.append(event["command"].split(" ", 1)[0])

    def __exit__(self, *exc):
        self.client.echo("monitor-stop")
        self.thread.join(5)


@pytest.mark.django_db
def test_a_customer_far_from_its_limits_costs_under_a_tenth_of_a_command_per_call(settings, monkeypatch):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="busy").raw
    call(raw)  # the key's config, the month counter's seed and the scripts are in place
    meter_commits_send(leases_all=True)
    client = get_redis_connection("default")
    for name in ("lease", "lease_close", "commit"):
        client.script_load(connection.script(name).script)

    redis_commands = this_threads_commands(monkeypatch)
    per_call = []
    with Monitor() as monitor:
        for _ in range(1_000):
            before = len(redis_commands)
            assert call(raw).allowed
            per_call.append(len(redis_commands) - before)
        meter_commits_send(leases_all=True)
        time.sleep(0.05)

    # At most one command on any call's path...
    assert max(per_call) == 1, [(i, n) for i, n in enumerate(per_call) if n > 1]
    sent = [c for c in monitor.commands if c != "ECHO"]
    assert len(sent) <= 100, sent  # ...and at most 0.1 a call, closes and commits included
    assert state(customer.pk) == {"billed": 1_001, "month": 1_001, "window": 1_001, "open": 0, "leases": 0}
    print(f"leases: {sum(per_call)} commands on 1,000 calls' paths, {len(sent)} in all: {sorted(set(sent))}")


@pytest.mark.django_db
def test_a_key_whose_lease_served_few_calls_is_metered_alone_until_it_calls_often_again(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    assert call(raw).lease is not None  # a key's first call asks for a lease of LEASE_FIRST
    time.sleep(LEASE_MS / 1000 + 0.15)  # it expires with that one call used
    quiet = [call(raw) for _ in range(leases.LEASE_FIRST - 1)]
    assert [r.lease for r in quiet] == [None] * (leases.LEASE_FIRST - 1)  # alone, as with leases off
    assert {r.store for r in quiet} == {"redis"}
    assert call(raw).lease is not None  # LEASE_FIRST calls within one lease span: leased again
    meter_commits_send(leases_all=True)
    assert state(customer.pk) == {"billed": 9, "month": 9, "window": 9, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_calls_under_a_lease_are_billed_by_their_answer(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    results = [call(raw, status) for status in (200, 500, 200, 404, 200, 429, 200, 200)]
    assert sum(r.lease is not None for r in results) >= 7  # the first call takes the lease
    meter_commits_send(leases_all=True)
    # 5 answered 2xx are billed; all 8 keep their place in the window.
    assert state(customer.pk) == {"billed": 5, "month": 5, "window": 8, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_the_committer_closes_an_expired_lease_without_another_call(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    for _ in range(3):
        call(raw)
    time.sleep(LEASE_MS / 1000 + 0.15)
    assert state(customer.pk) == {"billed": 3, "month": 3, "window": 3, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_a_call_running_when_its_lease_closes_is_billed_by_its_own_answer(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    config = key_config_get(raw)
    running = meter_call(config=config, raw_key=raw, product="geocode", revalidate=lambda c: c)
    call(raw)
    time.sleep(LEASE_MS / 1000 + 0.15)
    # Closed but for the call still running: it holds its month unit under a residual member.
    assert state(customer.pk) == {"billed": 1, "month": 2, "window": 2, "open": 1, "leases": 0}
    meter_settle(result=running, status_code=201)
    meter_commits_send()
    assert state(customer.pk) == {"billed": 2, "month": 2, "window": 2, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_an_answered_call_is_billed_though_another_of_its_lease_never_gets_an_answer(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    config = key_config_get(raw)
    answered, lost = (meter_call(config=config, raw_key=raw, product="geocode", revalidate=lambda c: c)
                      for _ in range(2))
    meter_commits_send(leases_all=True)
    meter_settle(result=answered, status_code=200)
    meter_commits_send()
    assert lost.lease is answered.lease is not None
    assert state(customer.pk) == {"billed": 1, "month": 2, "window": 2, "open": 1, "leases": 0}


@pytest.mark.django_db
def test_a_lease_never_answered_is_released_unbilled_by_the_flush(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    config = key_config_get(raw)
    for _ in range(3):  # admitted, never answered: their worker is gone
        assert meter_call(config=config, raw_key=raw, product="geocode", revalidate=lambda c: c).lease is not None
    settings.METERING_CALL_MAX_SECONDS = 0
    usage_flush()
    assert state(customer.pk)["month"] == 0 and state(customer.pk)["open"] == 0
    meter_commits_send(leases_all=True)  # a late close finds the lease released: nothing billed
    assert state(customer.pk)["billed"] == 0 and state(customer.pk)["month"] == 0


def _accepted(raw: str, calls: int) -> int:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(r.allowed for r in pool.map(lambda _: call(raw), range(calls)))


@pytest.mark.django_db(transaction=True)
def test_free_hard_cap_at_995_then_200_parallel_calls_accepts_exactly_5(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan(included_calls=1_000, hard_cap=True))
    raw = api_key_issue(customer=customer, name="k").raw
    call(raw)
    meter_commits_send(leases_all=True)
    get_redis_connection("default").set(month_counter_key(customer_id=customer.pk, day=timezone.now().date()), 995)
    assert _accepted(raw, 200) == 5


@pytest.mark.django_db(transaction=True)
def test_near_a_hard_cap_leases_never_overshoot_and_the_room_is_used_exactly(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan(included_calls=100_000, hard_cap=True))
    raw = api_key_issue(customer=customer, name="k").raw
    call(raw)
    meter_commits_send(leases_all=True)
    day = timezone.now().date()
    get_redis_connection("default").set(month_counter_key(customer_id=customer.pk, day=day), 98_500)
    accepted = 0
    for _ in range(20):  # a lease's unused units come back at its close: the rest are taken then
        round_ = _accepted(raw, 400)
        meter_commits_send(leases_all=True)
        accepted += round_
        if round_ == 0:
            break
    assert accepted == 1_500
    assert state(customer.pk)["month"] == 100_000
    assert call(raw).outcome == Outcome.QUOTA_EXCEEDED


@pytest.mark.django_db
def test_a_revoked_key_stops_being_admitted_within_one_lease_span(settings, django_capture_on_commit_callbacks):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    key = api_key_issue(customer=customer, name="k")
    config = key_config_get(key.raw)
    admit = lambda: meter_call(config=config, raw_key=key.raw, product="geocode",  # noqa: E731
                               revalidate=lambda c: access_check(c, "geocode", raw_key=key.raw))
    assert admit().lease is not None
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=key.key)
    raised = time.monotonic()
    admitted_after = 0
    with pytest.raises(exceptions.APIException, match="revoked|Invalid|invalid"):
        while True:
            admit()
            admitted_after += 1
            assert time.monotonic() - raised < LEASE_MS / 1000
    assert time.monotonic() - raised < LEASE_MS / 1000 + 0.1


@pytest.mark.django_db
def test_a_config_change_refuses_a_new_lease_at_once(settings, django_capture_on_commit_callbacks):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    call(raw)
    meter_commits_send(leases_all=True)  # no lease open
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=1)
    result = call(raw)  # with the config cached before the change: the script sees it is stale
    assert result.outcome == Outcome.SPEND_CAP and result.config.call_ceiling == 1


@pytest.mark.django_db
def test_process_exit_closes_the_open_leases(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    call(raw)
    call(raw, 500)
    meter_exit()
    assert state(customer.pk) == {"billed": 1, "month": 1, "window": 2, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_a_forked_worker_inherits_no_lease(settings):
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    assert call(raw).lease is not None
    with get_context("fork").Pool(1) as pool:
        assert pool.apply(_leases_held) == 0
    assert _leases_held() == 1


def _leases_held() -> int:
    return len(leases._admitting)


@pytest.mark.django_db
def test_leases_off_meters_every_call_alone(settings):
    settings.METERING_LEASES = False
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    results = [call(raw) for _ in range(3)]
    assert [r.lease for r in results] == [None] * 3
    meter_commits_send()
    assert state(customer.pk) == {"billed": 3, "month": 3, "window": 3, "open": 0, "leases": 0}


def test_usage_field_of_a_lease_member_is_its_calls_field():
    field = usage_field(day=timezone.now().date(), product="geocode", key_id=3)
    assert open_calls_batch([f"{field}#ab:1*7", f"{field}#ab:1.1*2", f"{field}#cd:4"]) == {field: 10}


@pytest.mark.django_db
def test_calls_either_side_of_utc_midnight_are_metered_under_their_own_day(settings, time_machine):
    # The meter keeps today's date with its bounds (metering/meter.py utc_today) instead of asking
    # the clock for a datetime per call: a call a moment after midnight must still open the new day,
    # with a lease of its own, and a clock moved back must be followed back.
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="k").raw
    time_machine.move_to("2026-12-31T23:59:59.900Z", tick=False)
    december = [call(raw) for _ in range(2)]
    time_machine.move_to("2027-01-01T00:00:00.100Z", tick=False)
    january = call(raw)
    time_machine.move_to("2026-12-31T12:00:00Z", tick=False)
    back = call(raw)
    assert [r.day.isoformat() for r in (*december, january, back)] == [
        "2026-12-31", "2026-12-31", "2027-01-01", "2026-12-31"]
    assert january.lease is not december[0].lease and december[1].lease is december[0].lease
    assert january.field.startswith("d|2027-01-01|geocode|")


def _busy_key(settings, size: int) -> tuple[str, int]:
    """A key whose next lease asks for `size` calls, and its customer's id."""
    settings.METERING_LEASES = True
    customer = CustomerFactory(plan=roomy_plan())
    raw = api_key_issue(customer=customer, name="busy").raw
    call(raw)  # the config, the month counter's seed and the scripts are in place
    meter_commits_send(leases_all=True)
    config = key_config_get(raw)
    leases._sizes[(customer.pk, config.key_id, "geocode", utc_today())] = size
    return raw, customer.pk


@pytest.mark.django_db
def test_a_busy_key_asks_for_its_next_lease_ahead_so_no_call_waits_when_one_runs_out(settings, monkeypatch):
    raw, customer_id = _busy_key(settings, 64)
    redis_commands = this_threads_commands(monkeypatch)
    per_call, results = [], []
    for _ in range(128):
        before = len(redis_commands)
        results.append(call(raw))
        per_call.append(len(redis_commands) - before)
    # Call 1 takes a lease of 64; call 32 (half of it) asks for the next; call 65 is admitted under
    # that one with no command; call 96 asks for the one after (128: the key used its lease up).
    assert [i for i, n in enumerate(per_call) if n] == [0, 31, 95]
    assert max(per_call) == 1
    assert results[64].lease is not results[63].lease is results[0].lease
    assert [r.lease for r in results[64:96]] == [results[64].lease] * 32
    assert results[64].month_calls == results[63].month_calls + 1 == 65 + 1  # the seeding call was the first
    meter_commits_send(leases_all=True)
    assert state(customer_id) == {"billed": 129, "month": 129, "window": 129, "open": 0, "leases": 0}


@pytest.mark.django_db
def test_a_lease_asked_ahead_and_never_used_gives_everything_back_and_keeps_the_key_leasing(settings):
    raw, customer_id = _busy_key(settings, 64)
    assert [call(raw).lease is not None for _ in range(32)] == [True] * 32
    # The 32nd call asked ahead: two leases outstanding, both holding their month units.
    assert state(customer_id)["leases"] == 2 and state(customer_id)["month"] == 1 + 64 + 64
    time.sleep(LEASE_MS / 1000 + 0.15)  # both leases expire: the second never admitted a call
    meter_commits_send(leases_all=True)
    assert state(customer_id) == {"billed": 33, "month": 33, "window": 33, "open": 0, "leases": 0}
    assert call(raw).lease is not None  # an unused lease asked ahead does not make the key "quiet"


@pytest.mark.django_db
def test_a_lease_asked_ahead_takes_over_though_the_committer_retired_the_current_one_first(settings, monkeypatch):
    raw, customer_id = _busy_key(settings, 64)
    used = [call(raw) for _ in range(64)]  # the 32nd asked ahead; the lease is now spent
    meter_commits_send()  # the committer retires and closes the spent lease before any call finds it so
    redis_commands = this_threads_commands(monkeypatch)
    after = call(raw)
    assert redis_commands == [] and after.lease is not None and after.lease is not used[0].lease
    meter_commits_send(leases_all=True)
    assert state(customer_id) == {"billed": 66, "month": 66, "window": 66, "open": 0, "leases": 0}
