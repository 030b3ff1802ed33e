"""Celery's broker is RabbitMQ or a plain Redis, never a Redis Cluster (issue 18): the settings
read at start-up, in a fresh process each, as a deployment would start."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.settings import celery_broker_transport_options
from tests.servers import ROOT

RABBITMQ = "amqp://tollbooth:s3cret@rabbit.internal:5672/tollbooth"
SHOW_BROKER = (
    "import django; django.setup(); from config.celery import app; "
    "print(json.dumps({'url': app.conf.broker_url, 'options': app.conf.broker_transport_options}))"
)


def settings_at_start(**env: str) -> subprocess.CompletedProcess:
    clean = {name: value for name, value in os.environ.items()
             if name not in ("CELERY_BROKER_URL", "REDIS_CLUSTER", "REDIS_URL", "CELERY_BROKER_TIMEOUT")}
    return subprocess.run(
        [sys.executable, "-c", f"import json; {SHOW_BROKER}"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true",
             "REDIS_URL": "redis://10.0.0.5:6379/0", **env},
    )


def broker_at_start(**env: str) -> dict:
    started = settings_at_start(**env)
    assert started.returncode == 0, started.stderr[-2000:]
    return json.loads(started.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("broker", [None, "redis://10.0.0.5:6379/0"], ids=["unset", "same-as-REDIS_URL"])
def test_a_redis_cluster_without_a_broker_of_its_own_refuses_to_start(broker):
    started = settings_at_start(REDIS_CLUSTER="true", **({"CELERY_BROKER_URL": broker} if broker else {}))

    assert started.returncode == 1
    assert "ImproperlyConfigured: REDIS_CLUSTER=true: set CELERY_BROKER_URL to a RabbitMQ" in started.stderr


def test_a_redis_cluster_with_rabbitmq_as_broker_starts_with_publisher_confirms_and_timeouts():
    broker = broker_at_start(REDIS_CLUSTER="true", CELERY_BROKER_URL=RABBITMQ, CELERY_BROKER_TIMEOUT="3")

    assert broker == {"url": RABBITMQ, "options": {
        "connect_timeout": 3.0, "read_timeout": 3.0, "write_timeout": 3.0, "confirm_publish": True}}


def test_a_redis_cluster_with_a_plain_redis_as_broker_starts_with_the_redis_timeouts():
    broker = broker_at_start(REDIS_CLUSTER="true", CELERY_BROKER_URL="redis://10.0.0.9:6379/0")

    assert broker == {"url": "redis://10.0.0.9:6379/0",
                      "options": {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}}


def test_by_default_the_broker_is_redis_url_as_before():
    assert broker_at_start() == {"url": "redis://10.0.0.5:6379/0",
                                 "options": {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}}


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672//", "amqps://h/v", "pyamqp://h//"])
def test_every_amqp_url_gets_publisher_confirms(url):
    assert celery_broker_transport_options(url)["confirm_publish"] is True


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/0"])
def test_a_redis_url_gets_the_redis_transport_options(url):
    assert set(celery_broker_transport_options(url)) == {"socket_connect_timeout", "socket_timeout"}
