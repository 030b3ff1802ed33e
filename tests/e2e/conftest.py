from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium driven by Playwright (it cannot download its own browsers here)."""
    if not os.access(CHROMIUM, os.X_OK):
        # A browser test that cannot run is a failure, not a skip: nothing would prove the pages.
        pytest.fail("chromium is not installed: run `make e2e-deps` (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; our DB reads here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
