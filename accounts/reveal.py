"""Show a freshly issued raw API key exactly once, on the page after the POST that made it.

The key travels through the session, but sessions are rows in Postgres, and a visitor who
never follows the redirect would leave it there, readable in every backup, until the session
expires. So the key is split in two: the session keeps the key XOR a random pad, and a
short-lived HttpOnly cookie keeps the pad. Neither half alone says anything about the key.
The first page that renders it pops the session half and deletes the cookie.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from .keyformat import key_is_well_formed

SESSION_KEY = "key_reveal"
COOKIE_NAME = "tb_reveal"
# Long enough to follow a redirect on a slow connection, short enough to be useless later.
COOKIE_MAX_AGE = 600


@dataclass(frozen=True)
class Reveal:
    raw: str
    name: str


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def reveal_stash(request: HttpRequest, response: HttpResponse, *, raw: str, name: str) -> None:
    """Keep `raw` for the next page view: half in the session, half in a cookie."""
    data = raw.encode("ascii")
    pad = secrets.token_bytes(len(data))
    request.session[SESSION_KEY] = {"cipher": _xor(data, pad).hex(), "name": name}
    response.set_cookie(
        COOKIE_NAME, pad.hex(), max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict",
        secure=request.is_secure(),
    )


def reveal_pop(request: HttpRequest) -> Reveal | None:
    """The stashed key, once; None when there is none or the halves do not match."""
    stashed = request.session.pop(SESSION_KEY, None)
    pad_hex = request.COOKIES.get(COOKIE_NAME, "")
    if not stashed or not pad_hex:
        return None
    try:
        raw = _xor(bytes.fromhex(stashed["cipher"]), bytes.fromhex(pad_hex)).decode("ascii")
    except (ValueError, KeyError, TypeError):
        return None
    # The key's own checksum tells a tampered or stale cookie from the real thing.
    if not key_is_well_formed(raw):
        return None
    return Reveal(raw=raw, name=str(stashed.get("name", "")))


def reveal_render(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Render `template` with `reveal` (the stashed key or None), consuming the stash."""
    reveal = reveal_pop(request)
    response = render(request, template, {**context, "reveal": reveal})
    if reveal is not None or COOKIE_NAME in request.COOKIES:
        response.delete_cookie(COOKIE_NAME, samesite="Strict")
    # A page that may carry a secret must not be kept by the browser or any cache.
    add_never_cache_headers(response)
    return response
