"""The portal's usage page (README "Usage export"): pick a range, read the per-key chart and
table, download the CSV; a bad range shows the form's error. At 1280 and 390 px, axe finds no
serious or critical violation and nothing scrolls sideways."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import ARTIFACTS, WIDTHS, context_new, log_in, page_problems
from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner(transactional_db):
    """Two keys with calls on three days of the last fortnight, and one day outside the range picked."""
    from accounts.services import api_key_issue, api_key_revoke
    from tests.factories import CustomerFactory, UsageRecordFactory, UserFactory, seeded_plan

    seeded_public_plans()
    customer = CustomerFactory(owner=UserFactory(email="ada@example.com"), company="Lovelace Labs",
                               plan=seeded_plan("starter"), created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    prod = api_key_issue(customer=customer, name="Production").key
    old = api_key_issue(customer=customer, name="=Old server").key
    api_key_revoke(key=old)
    today = datetime.now(timezone.utc).date()
    first = today - timedelta(days=13)
    for key, product, day, calls in [
        (prod, "geocode", first, 1200), (prod, "text", first + timedelta(days=1), 30),
        (old, "geocode", first + timedelta(days=1), 75), (prod, "geocode", first + timedelta(days=5), 8),
        (prod, "geocode", first - timedelta(days=1), 999),  # the day before the range
    ]:
        UsageRecordFactory(customer=customer, api_key=key, product=product, day=day, calls=calls)
    return {"email": "ada@example.com", "first": first, "last": first + timedelta(days=6), "prod": prod, "old": old}


def _whole(tick: str) -> bool:
    """"1.5k" is 1,500: whole; "2.5" is not."""
    number = float(tick.replace(",", "").rstrip("kM")) * {"k": 1_000, "M": 1_000_000}.get(tick[-1:], 1)
    return number == int(number)


@pytest.mark.parametrize("width", WIDTHS.values(), ids=WIDTHS.keys())
def test_a_customer_picks_a_range_reads_the_chart_and_downloads_the_csv(live_server, owner, browser, width):
    context = context_new(browser, width, accept_downloads=True)
    page = context.new_page()
    log_in(page, live_server, owner["email"])
    page.locator("#main-nav a[href='/portal/usage/']").dispatch_event("click")  # the phone's menu is folded
    page.wait_for_url(re.compile(r"/portal/usage/$"))
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()

    first, last = owner["first"].isoformat(), owner["last"].isoformat()
    page.get_by_label("From", exact=True).fill(first)
    page.get_by_label("To", exact=True).fill(last)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(rf"from={first}&to={last}"))

    chart = page.locator("#usage-chart svg.chart")
    expect(chart).to_be_visible()
    expect(page.locator("#usage-chart .chart-legend .legend")).to_have_count(2)  # two keys: two lines, a legend
    expect(page.locator("#usage-chart .chart-legend")).to_contain_text("Production")
    ticks = chart.locator(".y-tick").all_text_contents()
    assert ticks and all(_whole(t) for t in ticks), ticks  # calls come whole: no "2.5" tick
    table = page.locator("#usage-keys")
    expect(table.get_by_role("row", name=re.compile("^Production"))).to_contain_text("1,238")
    expect(table.get_by_role("row", name=re.compile("Old server"))).to_contain_text("revoked")
    expect(page.locator("#usage-keys-total")).to_have_text("1,313")
    expect(page.locator("#usage-total")).to_contain_text("1,313 calls")
    assert page_problems(page, "/portal/usage/", f"usage at {width}") == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"usage-{width}.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename == f"usage-{first}-to-{last}.csv"
    prod, old = owner["prod"], owner["old"]
    second, sixth = (owner["first"] + timedelta(days=n) for n in (1, 5))
    assert open(download.path(), encoding="utf-8").read().splitlines() == [
        "day,product,key_id,key_name,key,key_status,calls",
        f"{first},geocode,{prod.pk},Production,{prod.masked},active,1200",
        f"{second},geocode,{old.pk},'=Old server,{old.masked},revoked,75",
        f"{second},text,{prod.pk},Production,{prod.masked},active,30",
        f"{sixth},geocode,{prod.pk},Production,{prod.masked},active,8",
    ]

    # A range the wrong way round: the form says so, and there is nothing to export.
    page.get_by_label("From", exact=True).fill(last)
    page.get_by_label("To", exact=True).fill(first)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#id_from_error")).to_have_text(f"The start date must be on or before the end date ({first}).")
    expect(page.get_by_role("link", name="Export CSV")).to_have_count(0)
    assert page_problems(page, "/portal/usage/", f"usage, bad range, at {width}") == []

    page.get_by_role("link", name="Last 7 days").click()
    expect(page.get_by_label("To", exact=True)).to_have_value(datetime.now(timezone.utc).date().isoformat())
    expect(page.locator("#main-nav a[href='/portal/usage/']")).to_have_attribute("aria-current", "page")
    context.close()
