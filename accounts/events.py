"""What accounts announces to the apps above it; each signal is sent after its write commits."""
from __future__ import annotations

from django.dispatch import Signal

# key: the new ApiKey a rotation issued (its `rotated_from` is the old one).
api_key_rotated = Signal()
