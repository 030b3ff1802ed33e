from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for `make run`: it reads and writes every other app, so it sits above them all."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo"
