"""A task that leaves one file per run, so a test counts how often the broker delivered it (the
project's own tasks hide a second delivery behind their once-only receipts)."""
from __future__ import annotations

import uuid
from pathlib import Path

from celery import shared_task


@shared_task
def recorded_run(*, token: str, folder: str) -> None:
    (Path(folder) / f"{token}.{uuid.uuid4().hex}").touch()


def recorded_runs(folder: Path) -> dict[str, int]:
    """How many times each token's task ran."""
    runs: dict[str, int] = {}
    for path in folder.iterdir():
        token = path.name.split(".", 1)[0]
        runs[token] = runs.get(token, 0) + 1
    return runs
