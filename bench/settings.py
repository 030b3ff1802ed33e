"""Settings for the hot-path benchmark: the real settings plus three comparison endpoints."""
from config.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
LOGGING = {"version": 1, "disable_existing_loggers": True, "root": {"level": "ERROR"}}
