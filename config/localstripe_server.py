"""localstripe's server on one address, with its state in a file of its own.

    python -m config.localstripe_server --port PORT --state-file PATH [--host 127.0.0.1] [--from-scratch]

localstripe's own CLI (1.15) listens on every interface and keeps its state in
/tmp/localstripe.pickle, one file for every instance on the machine: a second instance (another
checkout, a test run) overwrites the first one's customers and payments. This launcher runs
the same aiohttp app on HOST (loopback unless told otherwise) and points its store's two disk
methods at PATH, written whole then renamed, so a crash never leaves half a file. It leans on
localstripe's internals (`resources.Store`, `server.app`); tests/test_embedded_stripe.py checks
both behaviours, and docs/decisions.md ("The embedded Stripe") says why.

config/embedded.py starts it; this module must not import Django either.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import socket
from pathlib import Path


def store_file_use(path: Path) -> None:
    """Every localstripe store in this process loads from and saves to `path`."""
    from localstripe import resources

    def load(store) -> None:
        try:
            with path.open("rb") as file:
                saved = pickle.load(file)
        except FileNotFoundError:
            return
        store.clear()
        store.update(saved)

    def dump(store) -> None:
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            # A plain dict: the file then loads without this launcher's patch in place.
            pickle.dump(dict(store), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--from-scratch", action="store_true")
    args = parser.parse_args(argv)

    store_file_use(args.state_file.resolve())
    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    if not args.from_scratch:
        store.try_load_from_disk()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # A restart takes the same port back while the old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.DEBUG)
    access.addHandler(logging.StreamHandler())
    web.run_app(app, sock=sock, access_log=access, print=None)


if __name__ == "__main__":
    main()
