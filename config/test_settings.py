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

_redis = urlsplit(REDIS_URL)  # noqa: F405
REDIS_URL = urlunsplit(_redis._replace(path=f"/{TEST_REDIS_DB}"))
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CELERY_BROKER_URL = REDIS_URL
# Webhook tests post to a receiver on 127.0.0.1 over plain http.
WEBHOOKS_ALLOW_HTTP = True
WEBHOOKS_ALLOW_PRIVATE = True
