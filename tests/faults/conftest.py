from __future__ import annotations

import os

import pytest

from config.celery import app as celery_app
from tests.faults.brokers import rabbitmq_choice


@pytest.fixture
def broker_sends():
    """This process hands tasks to the broker (the workers run them) instead of running them itself."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The RabbitMQ the broker tests run against, by one rule (tests/faults/brokers.py): the one
    CELERY_BROKER_URL names, failing the tests if it does not answer; else the usual local one,
    skipping only where none answers (a fresh machine)."""
    action, detail = rabbitmq_choice(dict(os.environ))
    if action == "fail":
        pytest.fail(detail, pytrace=False)
    if action == "skip":
        pytest.skip(detail)
    return detail
