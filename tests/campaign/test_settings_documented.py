"""Every variable the code reads from the environment is a row of the README's settings table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = r"""["']([A-Z][A-Z0-9_]*)["']"""
READS = [
    re.compile(rf"\benv\.\w+\(\s*{NAME}"),  # env.str("X", ...), env.bool, env.db, env.list...
    re.compile(rf"\benv\(\s*{NAME}"),
    re.compile(rf"\bEnv\(\)\.\w+\(\s*{NAME}"),
    re.compile(rf"\bos\.environ\.get\(\s*{NAME}"),
    re.compile(rf"\bos\.environ\[\s*{NAME}\s*\]"),
    re.compile(rf"\bos\.getenv\(\s*{NAME}"),
]


def code_files() -> list[Path]:
    files = [ROOT / "manage.py", ROOT / "deploy" / "gunicorn.conf.py"]
    for app in ("campaign", "events", "messages"):
        files += [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]
    return files


def names_read() -> dict[str, Path]:
    found = {}
    for path in code_files():
        text = path.read_text()
        for pattern in READS:
            for name in pattern.findall(text):
                found.setdefault(name, path.relative_to(ROOT))
    return found


def documented() -> set[str]:
    section = (ROOT / "README.md").read_text().split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_the_scan_finds_the_settings_it_must():
    # The patterns see every way the code reads a variable (else the next test proves nothing).
    read = names_read()
    assert {"SECRET_KEY", "DATABASE_URL", "VAR_DIR", "STATICFILES_STORAGE", "BIND"} <= set(read)
    assert {"WEB_THREADS", "PROMETHEUS_MULTIPROC_DIR", "CACHE_URL", "EMAIL_URL"} <= set(read)


def test_every_setting_the_code_reads_is_in_the_readmes_table():
    missing = {name: str(path) for name, path in names_read().items() if name not in documented()}
    assert missing == {}, f"add these to README's 'Settings (environment)' table: {missing}"
