"""After a signup through the pages, the raw key is nowhere at rest: not in the database, not in the logs."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.urls import reverse

from accounts.keyformat import key_hash
from tests.page_factories import seeded_public_plans, signup_data

KEY_IN_PAGE = re.compile(r"sk_(?:live|test)_[0-9a-f]{64}")


def _pg_dump_candidates() -> list[str]:
    """The embedded server's pg_dump first (it matches that server), then the system's."""
    found = []
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        found.append(str(Path(POSTGRES_BIN_PATH) / "pg_dump"))
    except ImportError:
        pass
    if shutil.which("pg_dump"):
        found.append(shutil.which("pg_dump"))
    return [path for path in found if os.access(path, os.X_OK)]


def _pg_dump() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or db.get("OPTIONS", {}).get("host") or ""
    args = ["--no-owner", "--dbname", db["NAME"]]
    args += ["--host", host] if host else []
    args += ["--port", str(db["PORT"])] if db.get("PORT") else []
    args += ["--username", db["USER"]] if db.get("USER") else []
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    errors = []
    # A pg_dump older than the server refuses to run; try the next one then.
    for binary in _pg_dump_candidates():
        result = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120)
        if result.returncode == 0:
            return result.stdout
        errors.append(f"{binary}: {result.stderr.strip()}")
    pytest.fail("pg_dump failed or was not found:\n" + "\n".join(errors))


@pytest.mark.django_db(transaction=True)
def test_a_signup_leaves_no_raw_key_in_the_database_or_the_logs(client, caplog, capsys):
    seeded_public_plans()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")  # settings keep it at INFO
    connection.force_debug_cursor = True  # log every SQL statement and its parameters too
    try:
        client.post(reverse("signup"), signup_data())
        # Dump while the key is still waiting to be shown: the moment it is most at risk.
        dump = _pg_dump()
        # Session rows are signed base64: decode them too, or a plain session would pass.
        sessions = [str(session.get_decoded()) for session in Session.objects.all()]
        raw = KEY_IN_PAGE.search(client.get(reverse("signup-welcome")).content.decode()).group()
        dump_after = _pg_dump()
    finally:
        connection.force_debug_cursor = False

    captured = capsys.readouterr()
    assert "django_session" in dump and "accounts_apikey" in dump
    assert key_hash(raw) in dump and key_hash(raw) in dump_after
    assert "INSERT INTO" in caplog.text  # the SQL log was on
    assert sessions
    for text in (dump, dump_after, caplog.text, captured.out, captured.err, *sessions):
        assert raw not in text
        assert raw[8:-8] not in text  # not even the secret middle without prefix and checksum
