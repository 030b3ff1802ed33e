"""gunicorn settings for the web process (Procfile) and the tests' servers: `-c config/gunicorn.py`.

A client that sends its API key in the query string (`?api_key=sk_live_...`) is refused, but
gunicorn would still write the request line to the access log, and a log is no place for a
raw key. So the access log leaves out the query string of every /v1 request (API input may be
personal data too) and masks anything key-shaped in every field it can print: request line,
query, referer and any header or environ value a custom format might use. The credential headers
themselves (Authorization, X-API-Key) are never printed, whatever they hold.
"""
from __future__ import annotations

import gc
import os
import re

from gunicorn.glogging import Logger

# Serving model (docs/decisions.md, "Serving model: threads"): threaded workers, so a call
# waiting on a slow upstream holds a thread, not a whole process. WEB_CONCURRENCY processes of
# GUNICORN_THREADS threads each take 2 x 160 = 320 calls in flight at once; the threads share a
# pool of DB_POOL_MAX_SIZE database connections per process (the gateway's steady state needs
# none). Command-line flags (the tests' servers pass their own) override these.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "160"))
# Set in the workers only (gunicorn's env setting), an operator's own value kept.
raw_env = [f"DB_POOL_MAX_SIZE={os.environ.get('DB_POOL_MAX_SIZE', '10')}"]


def post_worker_init(worker) -> None:
    """Freeze what the worker loaded (Django, the app, their modules: about 500,000 objects) out
    of the garbage collector's reach. They live as long as the worker, yet every full collection
    scanned them all, holding the GIL 200-270 ms on this project's bench machine: each worker
    stalled every request in flight about every 30 s, the p99 "stalls" of README "Benchmarks"."""
    gc.freeze()


# Our key prefixes, also percent-encoded, followed by whatever the client sent as the body.
KEY_SHAPED = re.compile(r"sk(?:_|%5f)(?:live|test)(?:_|%5f)[0-9a-z]*", re.IGNORECASE)
KEY_MASK = "sk_[redacted]"
QUERY_OMITTED = "?[omitted]"
# Credentials a custom log format could print as a header (`{x-api-key}i`) or environ atom: never
# printed, whatever their shape.
SECRET_HEADERS = ("authorization", "x-api-key")
SECRET_ATOMS = tuple(f"{{{h}}}i" for h in SECRET_HEADERS) + tuple(
    f"{{http_{h.replace('-', '_')}}}e" for h in SECRET_HEADERS)
SECRET_MASK = "[redacted]"


def _is_api(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class KeySafeLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        if _is_api(environ.get("PATH_INFO") or "") and environ.get("QUERY_STRING"):
            path = environ.get("RAW_URI", "").split("?", 1)[0]
            atoms["r"] = f"{environ['REQUEST_METHOD']} {path}{QUERY_OMITTED} {environ['SERVER_PROTOCOL']}"
            atoms["q"] = QUERY_OMITTED
        for name in SECRET_ATOMS:
            if name in atoms:
                atoms[name] = SECRET_MASK
        # One scan of every value joined (no key spans the line break) instead of one per atom:
        # gunicorn makes an atom of every header and environ entry, on every request.
        if KEY_SHAPED.search("\n".join(v for v in atoms.values() if isinstance(v, str))) is None:
            return atoms
        return {name: KEY_SHAPED.sub(KEY_MASK, value) if isinstance(value, str) else value
                for name, value in atoms.items()}


logger_class = KeySafeLogger
