"""What the browser tests share: the two widths, signing in, and the checks every page must pass
(nothing scrolls sideways, axe-core finds no serious or critical violation)."""
from __future__ import annotations

import re
from pathlib import Path

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
WIDTHS = {"desktop": 1280, "phone": 390}

# Swagger UI draws each operation's header as a button inside a clickable row; that markup is
# the library's own (our page around it is checked in full).
THIRD_PARTY = {"/v1/docs/": {"nested-interactive"}}

OVERFLOWING = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
               && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.')
                   + ' ' + Math.round(e.getBoundingClientRect().right))"""


def context_new(browser, width: int, **options):
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    context.set_default_timeout(15_000)
    return context


def log_in(page, live_server, email: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/(portal|dashboard)/$"))


def serious(page, path: str) -> list[str]:
    """axe-core's serious and critical violations on the page, less the library markup of `path`."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical") and v["id"] not in THIRD_PARTY.get(path, ())
    ]


def overflowing(page) -> list[str]:
    """The innermost elements that reach past the window's right edge: what to fix."""
    return page.evaluate(OVERFLOWING)


def sideways(page) -> str | None:
    """How the page scrolls sideways, or None when it fits the window."""
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        return f"scrolls sideways ({scroll}px > {inner}px), widest: {overflowing(page)}"
    return None


def page_problems(page, path: str, where: str) -> list[str]:
    """Every check a page must pass, each prefixed with `where` (the page and the width)."""
    page.wait_for_load_state("networkidle")
    problems = [f"{where}: {wide}"] if (wide := sideways(page)) else []
    return problems + [f"{where}: {v}" for v in serious(page, path)]
