"""Counting what this process sends to the real Redis, for the hot-path budget tests.

A pass-through counter on redis-py's connection class: every command still goes to the test
Redis and its answer comes back unchanged; the counter only notes which thread sent which
command. Single commands pass `send_command`, a pipeline packs its whole list with
`pack_commands` (one round trip, several commands: each is counted). Redis's own INFO
commandstats would count the other databases' clients of the same server too, so the tests
count at the client.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis


@dataclass
class RedisCommands:
    sent: list[tuple[int, str]] = field(default_factory=list)  # (thread id, command name)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, names: list) -> None:
        thread = threading.get_ident()
        with self.lock:
            self.sent.extend((thread, _name(n)) for n in names)

    def mark(self) -> int:
        with self.lock:
            return len(self.sent)

    def since(self, mark: int, *, thread: int | None = None) -> list[str]:
        """Command names sent after `mark`, by `thread` only if given."""
        with self.lock:
            return [name for t, name in self.sent[mark:] if thread is None or t == thread]

    def wait_quiet(self, seconds: float, *, timeout: float = 30) -> None:
        """Until no thread has sent anything for `seconds` (background sends are done)."""
        deadline = time.monotonic() + timeout
        last, since = self.mark(), time.monotonic()
        while time.monotonic() - since < seconds:
            assert time.monotonic() < deadline, "this process kept sending Redis commands"
            time.sleep(0.05)
            if self.mark() != last:
                last, since = self.mark(), time.monotonic()


def _name(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def count_redis_commands(monkeypatch) -> RedisCommands:
    """Start counting every command this process sends to Redis, from any thread."""
    counter = RedisCommands()
    connection_class = redis.connection.AbstractConnection
    send_command, pack_commands = connection_class.send_command, connection_class.pack_commands

    def counting_send_command(self, *args, **kwargs):
        counter.note([args[0]])
        return send_command(self, *args, **kwargs)

    def counting_pack_commands(self, commands):
        commands = list(commands)
        counter.note([command[0] for command in commands])
        return pack_commands(self, commands)

    monkeypatch.setattr(connection_class, "send_command", counting_send_command)
    monkeypatch.setattr(connection_class, "pack_commands", counting_pack_commands)
    return counter
