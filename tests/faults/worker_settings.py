"""Settings for a real Celery worker started by a fault test: the test settings, tasks sent to
the broker, and each email written as a file the test can count (see tests/faults/mailbox.py)."""
from config.test_settings import *  # noqa: F401,F403

CELERY_TASK_ALWAYS_EAGER = False
EMAIL_BACKEND = "tests.faults.mailbox.FileEachEmailBackend"
