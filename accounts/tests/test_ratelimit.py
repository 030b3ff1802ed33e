from __future__ import annotations

import pytest
from django.test import RequestFactory
from django_redis import get_redis_connection

from accounts.ratelimit import attempt_count, client_ip


@pytest.mark.parametrize(
    "remote, expected",
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("", "unknown"),
    ],
)
def test_client_ip_counts_an_ipv6_client_by_its_64(remote, expected):
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert client_ip(request) == expected


def test_attempts_past_the_limit_are_limited_until_the_window_ends():
    results = [attempt_count(scope="t", ident="a", limit=3, window_seconds=60) for _ in range(4)]

    assert [r.limited for r in results] == [False, False, False, True]
    assert 0 < results[-1].retry_after <= 60
    assert 0 < get_redis_connection("default").ttl("tb:ratelimit:t:a") <= 60
    assert not attempt_count(scope="t", ident="b", limit=3, window_seconds=60).limited


def test_the_limiter_lets_attempts_through_when_redis_is_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }

    assert not attempt_count(scope="t", ident="a", limit=0, window_seconds=60).limited
