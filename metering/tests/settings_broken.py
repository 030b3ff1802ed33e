"""Test settings for a server that also serves the failing and hanging endpoints of urls_broken."""
from config.test_settings import *  # noqa: F401,F403

ROOT_URLCONF = "metering.tests.urls_broken"
