"""An email backend for worker processes under fault tests: the edge of the world, as SMTP is.

FAULT_MAIL_DIR: each email sent becomes one file there.
FAULT_HANG_FLAG: while this file exists, a worker process about to send its
FAULT_HANG_AFTER+1-th email writes FAULT_HANG_FLAG + ".hanging" (its pid) and waits inside the
send, as behind a stuck SMTP server, so that the test can kill it at that exact point.
"""
from __future__ import annotations

import email
import os
import time
import uuid
from email.header import decode_header, make_header
from pathlib import Path

from django.core.mail.backends.base import BaseEmailBackend


class FileEachEmailBackend(BaseEmailBackend):
    sent_by_this_process = 0

    def send_messages(self, messages) -> int:
        for message in messages:
            _hang_if_asked(FileEachEmailBackend.sent_by_this_process)
            (Path(os.environ["FAULT_MAIL_DIR"]) / f"{uuid.uuid4().hex}.eml").write_bytes(message.message().as_bytes())
            FileEachEmailBackend.sent_by_this_process += 1
        return len(messages)


def _hang_if_asked(sent: int) -> None:
    flag = os.environ.get("FAULT_HANG_FLAG", "")
    if not flag or sent != int(os.environ.get("FAULT_HANG_AFTER", "0")) or not Path(flag).exists():
        return
    Path(flag + ".hanging").write_text(str(os.getpid()))
    while Path(flag).exists():
        time.sleep(0.05)


def mailbox_subjects(folder: Path) -> list[str]:
    """The Subject line of every email written to `folder`."""
    messages = (email.message_from_bytes(path.read_bytes()) for path in folder.glob("*.eml"))
    return [str(make_header(decode_header(message["Subject"]))) for message in messages]
