from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxTask(models.Model):
    """A Celery task a committed transaction asked for, kept until the broker has taken it."""

    task = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    # When the broker accepted the message; NULL while it is still to be sent.
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], condition=Q(sent_at__isnull=True), name="outbox_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.task} #{self.pk}"


class TaskReceipt(models.Model):
    """Proof that a piece of once-only work (an email, say) was done, under its own key."""

    key = models.CharField(max_length=200, unique=True)
    done_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key
