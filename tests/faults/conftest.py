from __future__ import annotations

import pytest

from config.celery import app as celery_app


@pytest.fixture
def broker_sends():
    """This process hands tasks to the broker (the workers run them) instead of running them itself."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = eager
