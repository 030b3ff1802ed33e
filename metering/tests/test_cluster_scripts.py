"""Every metering Lua script keeps to one Redis Cluster slot: the scripts name no key of their
own (only KEYS), the Python builds every key with one customer's {hash tag}, and the real call
paths run on a three-primary cluster without a CROSSSLOT refusal."""
from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from core.redis import redis_client
from metering import connection, testmode, usage_fields
from metering.tasks import usage_flush as usage_flush_task
from tests.factories import CustomerFactory
from tests.redis_cluster import LocalRedisCluster, app_on_cluster

METERING = Path(connection.__file__).parent
SCRIPTS = sorted(p.stem for p in connection.LUA_DIR.glob("*.lua") if p.stem != "window")
KEY_COMMANDS = re.compile(r"redis\.p?call\('(?!TIME')([A-Z]+)'\s*,\s*([^,)]+)")
KEY_BUILDERS = {"customer_key", "month_counter_key", "open_calls_key", "open_calls_keys", "flush_generation_key",
                "usage_cache_key", "window_key", "day_counter_key", "usage_key", "_ticket_key"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_touches_only_the_keys_it_is_given(name):
    source = connection.script_source(name)
    touched = KEY_COMMANDS.findall(source)
    assert touched, f"{name} names no key"
    for command, key in touched:
        key = key.strip()
        # KEYS[n], or a local/parameter bound to KEYS[n] in the same script: never a name it builds.
        assert re.fullmatch(r"KEYS\[\d+\]|[a-z_]+", key), f"{name}: {command} on {key}"
        if not key.startswith("KEYS"):
            assert re.search(rf"\b{key}\b\s*(=|,).*KEYS\[|\(\s*KEYS\[\d+\]", source), f"{name}: {key} not from KEYS"
    assert "tb:" not in source


def test_every_key_builder_puts_one_customer_in_the_hash_tag():
    day = date(2026, 3, 4)
    built = [
        connection.customer_key(42, "pending"), usage_fields.month_counter_key(customer_id=42, day=day),
        usage_fields.open_calls_key(customer_id=42, day=day), usage_fields.flush_generation_key(customer_id=42),
        usage_fields.usage_cache_key(customer_id=42, day=day), testmode.window_key(customer_id=42),
        testmode.day_counter_key(customer_id=42, day=day), testmode.usage_key(customer_id=42, day=day),
        *(k for pair in usage_fields.open_calls_keys(customer_id=42, day=day) for k in pair),
    ]
    assert all(re.fullmatch(r"tb:\{42\}:[^{}]+", key) for key in built), built


def _script_call_keys(tree: ast.AST):
    """The key expressions of every run_script(...) and script(...)(keys=...) call."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "run_script" and len(node.args) >= 3:
            yield node.args[2]
        for keyword in node.keywords:
            if keyword.arg == "keys":
                yield keyword.value


def test_every_script_call_site_passes_keys_from_the_customer_key_builders():
    sites = 0
    for path in sorted(METERING.glob("*.py")):
        tree = ast.parse(path.read_text())
        for keys in _script_call_keys(tree):
            sites += 1
            names = {n.id for n in ast.walk(keys) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(keys) if isinstance(n, ast.Attribute)}
            calls = {(c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", ""))
                     for c in ast.walk(keys) if isinstance(c, ast.Call)}
            # A literal string as a key would be a key outside every customer's slot.
            elements = keys.elts if isinstance(keys, (ast.Tuple, ast.List)) else [keys]
            assert not any(isinstance(e, ast.Constant) for e in elements), f"{path.name}:{keys.lineno}"
            assert calls <= KEY_BUILDERS, f"{path.name}:{keys.lineno} builds keys with {calls - KEY_BUILDERS}"
            assert calls or names, f"{path.name}:{keys.lineno}"
    assert sites >= 8


@pytest.mark.django_db
def test_the_scripts_real_call_paths_run_on_a_cluster(settings, starter_plan):
    with LocalRedisCluster() as cluster, app_on_cluster(settings, cluster, seeds=[cluster.url]):
        customer = CustomerFactory(plan=starter_plan)
        live = api_key_issue(customer=customer, name="live").raw
        test = api_key_issue(customer=customer, name="test", test=True).raw
        for raw in (live, test):
            for _ in range(3):
                response = APIClient().get("/v1/geocode?q=Rome", HTTP_X_API_KEY=raw)
                assert response.status_code == 200, response.content
        assert usage_flush_task.delay().get() == {"customers": 1, "calls": 3, "batches_skipped": 0}
        assert redis_client().exists(testmode.usage_key(customer_id=customer.pk, day=date.today()))
