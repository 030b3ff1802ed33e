"""Settings for a real Celery worker on RabbitMQ started by a fault test: the fault tests' worker
settings, the broker at RABBITMQ_TEST_URL, and every queue renamed with TEST_QUEUE_SUFFIX so that
test runs sharing one broker never take each other's messages (tests/faults/brokers.py)."""
import os

from tests.faults.brokers import queues_of_run
from tests.faults.worker_settings import *  # noqa: F401,F403
from tests.faults.worker_settings import (
    CELERY_TASK_DEFAULT_QUEUE,
    CELERY_TASK_QUEUES,
    CELERY_TASK_ROUTES,
    celery_broker_transport_options,
)

CELERY_BROKER_URL = CELERY_BROKER_READ_URL = CELERY_BROKER_WRITE_URL = os.environ["RABBITMQ_TEST_URL"]
CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker_transport_options(CELERY_BROKER_URL)
_run = queues_of_run(os.environ["TEST_QUEUE_SUFFIX"], CELERY_TASK_QUEUES, CELERY_TASK_ROUTES, CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_QUEUES = _run["task_queues"]
CELERY_TASK_ROUTES = _run["task_routes"]
CELERY_TASK_DEFAULT_QUEUE = _run["task_default_queue"]
CELERY_IMPORTS = ["tests.faults.recorded"]
