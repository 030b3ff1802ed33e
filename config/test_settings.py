"""Test settings: the real Postgres and Redis, with Celery tasks run in-process."""
import os

# Tests serve plain HTTP on 127.0.0.1 with a key of their own (the base settings refuse the
# development key when DEBUG is false); child processes inherit both.
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 50)
os.environ.setdefault("SECURE_HTTPS", "false")

from .settings import *  # noqa: E402,F401,F403
from .settings import env
from urllib.parse import urlsplit, urlunsplit

CELERY_TASK_ALWAYS_EAGER = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests own a Redis database number of their own and flush it between tests.
TEST_REDIS_DB = env.int("TEST_REDIS_DB", default=9)

if not REDIS_CLUSTER:  # noqa: F405 - a cluster has database 0 only: give the tests one of their own
    _redis = urlsplit(REDIS_URL)  # noqa: F405
    REDIS_URL = urlunsplit(_redis._replace(path=f"/{TEST_REDIS_DB}"))
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
    # The tests' broker is their own Redis database. Celery reads a CELERY_BROKER_URL variable
    # before this setting, so the read and write URLs pin it (a RabbitMQ named in the environment
    # is for the tests that ask for it, tests/faults/brokers.py). A cluster keeps the broker named
    # in the environment: it cannot be one (config/settings.py).
    CELERY_BROKER_URL = CELERY_BROKER_READ_URL = CELERY_BROKER_WRITE_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker_transport_options(CELERY_BROKER_URL)  # noqa: F405
# Webhook tests post to a receiver on 127.0.0.1 over plain http.
WEBHOOKS_ALLOW_HTTP = True
WEBHOOKS_ALLOW_PRIVATE = True
