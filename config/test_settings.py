"""Test settings: the real Postgres and Redis, with Celery tasks run in-process."""
from .settings import *  # noqa: F401,F403
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
