"""Demo data for `make run`: the staff login and a year of a small API business (demo.seed).

Idempotent: a second run changes nothing; a run months later only catches up what time did.
"""
from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from demo.seed import DEMO_CUSTOMER_EMAIL, demo_seed, vision_secret_write


class Command(BaseCommand):
    help = "Create the demo staff account and demo customers with a year of history (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--upstream-secret-file", type=Path,
            help="Write the sample upstream's signing secret here (mode 600) for demo/upstream.py; "
                 "`make run` passes var/demo_upstream_secret.")

    def handle(self, *args, **options) -> None:
        email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@tollbooth.local")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "tollbooth-demo")
        self._staff(email, password)
        report = demo_seed()
        # One customer can sign in too, to show the portal with a year of history behind it.
        self._password(get_user_model().objects.get(username=DEMO_CUSTOMER_EMAIL), password)
        if options.get("upstream_secret_file"):
            vision_secret_write(options["upstream_secret_file"])
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready ({report.created} new customers, {report.invoices} new invoices, "
            f"{report.trials_ended} trials ended). Staff login: {email} / {password} "
            f"at /dashboard/ and /admin/; a customer's: {DEMO_CUSTOMER_EMAIL} / {password} at /portal/ "
            f"(set DEMO_ADMIN_PASSWORD to choose another). The sample upstream (demo/upstream.py) is sold "
            f"as POST /v1/vision/analyze on the paid plans."
        ))

    def _staff(self, email: str, password: str) -> None:
        user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
        if not (user.is_staff and user.is_superuser):
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        self._password(user, password)

    def _password(self, user, password: str) -> None:
        if not user.check_password(password):  # a rerun keeps the stored hash
            user.set_password(password)
            user.save(update_fields=["password"])
