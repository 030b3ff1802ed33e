"""Sign-in limits shared by the customer login and the staff admin login.

Two counters, both over LOGIN_WINDOW_SECONDS: every POST from an address (one budget for
/login/ and /admin/login/, so a blocked address cannot move to the other form), and the
failed sign-ins per account, whatever address they came from, so guesses spread over many
addresses still run out. Only failures count per account: a customer who signs in often
never locks themselves out. Anyone who knows an address can hold its account's limit down
for a window; the window is short and a password reset still works.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from .ratelimit import Attempt, attempt_count, attempt_peek, client_ip

LOGIN_WINDOW_SECONDS = 15 * 60
ACCOUNT_SCOPE = "login-account"


def account_ident(username: object) -> str:
    # Hashed: the counter key is bounded in size and holds no address in clear.
    name = str(username or "").strip().lower()
    return hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:32]


def login_attempt_count(request: HttpRequest) -> Attempt:
    """Count this sign-in POST for its address and check its account's failures."""
    by_address = attempt_count(
        scope="login", ident=client_ip(request), limit=settings.LOGINS_PER_15_MIN_PER_IP,
        window_seconds=LOGIN_WINDOW_SECONDS,
    )
    if by_address.limited:
        return by_address
    by_account = attempt_peek(
        scope=ACCOUNT_SCOPE, ident=account_ident(request.POST.get("username")),
        limit=settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT,
    )
    return replace(by_account, per_account=True)


@receiver(user_login_failed, dispatch_uid="accounts.login_guard.failure_count")
def login_failure_count(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    attempt_count(
        scope=ACCOUNT_SCOPE, ident=account_ident(credentials.get("username")),
        limit=settings.LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT, window_seconds=LOGIN_WINDOW_SECONDS,
    )
