"""Settings for the gateway benchmark: the hot-path bench's settings, with the project's routes too."""
from bench.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls_gateway"
