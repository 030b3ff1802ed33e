"""Settings for the hot-path benchmark: the real settings plus three comparison endpoints."""
import os

# Plain HTTP on loopback, with a throwaway key (the real settings refuse the development one).
os.environ.setdefault("SECRET_KEY", "bench-only-" + os.urandom(32).hex())
os.environ.setdefault("SECURE_HTTPS", "false")

from config.settings import *  # noqa: E402,F401,F403

ROOT_URLCONF = "bench.urls"
LOGGING = {"version": 1, "disable_existing_loggers": True, "root": {"level": "ERROR"}}
