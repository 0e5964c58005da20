"""The default email backend without an SMTP server: each email is one .eml file under var/mail/.

Django's file backend appends every email of a connection to one .log file; a person wants to open
one email in a mail client, so each message here is its own RFC 5322 file, written under a temporary
name and renamed, so that nothing watching the folder ever reads half an email.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from django.core.mail.backends import filebased
from django.core.mail.message import EmailMessage
from django.utils import timezone


class EmailBackend(filebased.EmailBackend):
    def open(self) -> bool:
        return False  # no stream to keep open: each message opens its own file

    def close(self) -> None:
        pass

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                self._write(message)
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent

    def _write(self, message: EmailMessage) -> None:
        # Sortable by time, unique across processes and threads.
        name = f"{timezone.now():%Y%m%d-%H%M%S-%f}-{uuid.uuid4().hex[:12]}.eml"
        temporary = os.path.join(self.file_path, f".{name}.part")
        with open(temporary, "wb") as file:
            file.write(message.message().as_bytes())
        os.replace(temporary, os.path.join(self.file_path, name))
