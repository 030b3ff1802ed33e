from __future__ import annotations

from celery import shared_task

import outbox


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def welcome_email_send(*, customer_id: int) -> None:
    from .emails import welcome_email_send as send

    # The outbox may deliver a task twice; the receipt makes the second one a no-op.
    outbox.run_once(key=f"welcome-email:{customer_id}", work=lambda: send(customer_id=customer_id))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def key_rotated_email_send(*, key_id: int) -> None:
    from .emails import key_rotated_email_send as send

    outbox.run_once(key=f"key-rotated-email:{key_id}", work=lambda: send(key_id=key_id))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def terms_notice_email_send(*, customer_id: int, old_terms_id: int, new_terms_id: int, starts_at: str) -> None:
    from .emails import terms_notice_email_send as send

    outbox.run_once(
        key=f"terms-notice-email:{customer_id}:{new_terms_id}:{starts_at}",
        work=lambda: send(customer_id=customer_id, old_terms_id=old_terms_id, new_terms_id=new_terms_id,
                          starts_at=starts_at),
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def email_change_confirm_email_send(*, user_id: int, email: str, requested_at: str) -> None:
    from .emails import email_change_confirm_email_send as send

    outbox.run_once(key=f"email-change-confirm:{user_id}:{requested_at}",
                    work=lambda: send(user_id=user_id, email=email))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def email_change_requested_email_send(*, user_id: int, email: str, requested_at: str) -> None:
    from .emails import email_change_requested_email_send as send

    outbox.run_once(key=f"email-change-requested:{user_id}:{requested_at}",
                    work=lambda: send(user_id=user_id, email=email))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def email_changed_email_send(*, user_id: int, old_email: str, changed_at: str) -> None:
    from .emails import email_changed_email_send as send

    outbox.run_once(key=f"email-changed:{user_id}:{changed_at}",
                    work=lambda: send(user_id=user_id, old_email=old_email))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def password_changed_email_send(*, user_id: int, changed_at: str) -> None:
    from .emails import password_changed_email_send as send

    outbox.run_once(key=f"password-changed:{user_id}:{changed_at}",
                    work=lambda: send(user_id=user_id, changed_at=changed_at))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def team_invite_email_send(*, invitation_id: int) -> None:
    from .emails import team_invite_email_send as send

    outbox.run_once(key=f"team-invite-email:{invitation_id}", work=lambda: send(invitation_id=invitation_id))


@shared_task
def api_keys_expire() -> int:
    """Stamp revoked_at on keys whose rotation grace period ended, so lists read simply."""
    from django.db.models import F
    from django.utils import timezone

    from .models import ApiKey

    return ApiKey.objects.filter(revoked_at__isnull=True, expires_at__lte=timezone.now()).update(
        revoked_at=F("expires_at")
    )
