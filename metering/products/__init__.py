"""Framework-free analyzers behind the metered API products.

Each module exposes keyword-only functions that take plain Python values,
return JSON-ready dicts/lists and signal bad input exclusively through
:class:`metering.products.errors.ProductInputError`, so the API layer can map
every refusal to an HTTP response without knowing the analyzer internals.
"""

from __future__ import annotations

from metering.products.errors import ProductInputError

__all__ = ["ProductInputError"]
