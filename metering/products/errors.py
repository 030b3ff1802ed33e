"""The single exception type the product analyzers raise for bad input."""

from __future__ import annotations


class ProductInputError(Exception):
    """Input was refused; carries everything the API layer needs to respond.

    ``code`` is a stable machine-readable slug (e.g. ``"invalid_query"``),
    ``status`` the HTTP status to answer with (400 by default, 413 for
    payloads that are too large) and ``field`` the request field at fault,
    when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 400,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.field = field

    def __repr__(self) -> str:
        return (
            f"ProductInputError(code={self.code!r}, status={self.status}, "
            f"field={self.field!r}, message={self.message!r})"
        )

    def as_dict(self) -> dict[str, object]:
        """Error body in the shape the API returns (handy for views/tests)."""
        return {"code": self.code, "message": self.message, "field": self.field}
