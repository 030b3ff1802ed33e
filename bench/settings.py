"""Settings for the hot-path benchmark: the real settings plus three comparison endpoints."""
import os

# Plain HTTP on loopback, with a throwaway key (the real settings refuse the development one).
os.environ.setdefault("SECRET_KEY", "bench-only-" + os.urandom(32).hex())
os.environ.setdefault("SECURE_HTTPS", "false")

from config.settings import *  # noqa: E402,F401,F403

ROOT_URLCONF = "bench.urls"
# Pages render without `collectstatic` first (bench/dashboard.py on a fresh clone): the manifest
# storage would refuse every {% static %} it has no entry for.
STORAGES = {  # noqa: F405
    **STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},  # noqa: F405
}
LOGGING = {"version": 1, "disable_existing_loggers": True, "root": {"level": "ERROR"}}
