"""SECRET_KEY: the one from the environment, or one generated on this machine, never one from the repository.

Read by settings.py before Django is set up (so: no Django imports). A fresh clone gets a random key
written once under var/ (mode 600) and reused by every process of that checkout, so the demo and the
README's commands work with nothing set; `check --deploy` refuses such a key (production sets one
SECRET_KEY shared by every machine). With DEBUG off, a placeholder or a short key stops the process
with one line (settings.py), whatever started it: gunicorn, celery or a manage.py command.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 50
# deploy/production.env.example's value, and the like: a key someone meant to replace.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "your-secret-key")
NEW_KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"


def refusal(key: str) -> str | None:
    """Why `key` must not run a production process (DEBUG off), or None if it may."""
    if any(marker in key.lower() for marker in PLACEHOLDER_MARKERS):
        return (
            "SECRET_KEY is a placeholder: set it to 50 or more random characters, the same on every machine "
            f"(e.g. {NEW_KEY_COMMAND})"
        )
    if len(key) < MIN_LENGTH:
        return (
            f"SECRET_KEY has {len(key)} characters: set it to {MIN_LENGTH} or more random characters, "
            f"the same on every machine (e.g. {NEW_KEY_COMMAND})"
        )
    return None


def generated(path: Path) -> str:
    """The key kept in `path`, created (mode 600) with a random key on first use.

    Processes started together (the demo's web server and worker) race for the first write: the key
    is written to a private temporary file and hard-linked into place, so every process reads the
    one complete key that won.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(MIN_LENGTH) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process of this checkout was first: use its key
        finally:
            temporary.unlink()
    return path.read_text().strip()
