from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollbooth")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks are acknowledged after they ran (CELERY_TASK_ACKS_LATE); this makes a worker child
# that dies mid-task (SIGKILL, OOM) hand its message back for redelivery instead of acking it,
# so an issued invoice's dispatch or a month close is never lost. Every task is safe to repeat
# (outbox run_once receipts, row claims, a Stripe look-up before each charge).
app.conf.task_reject_on_worker_lost = True
app.autodiscover_tasks()
