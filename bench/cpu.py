"""CPU time of a process tree, read from /proc: what a process and its descendants used, in seconds.

A cell's CPU milliseconds per event move far less between runs than its rate (another process
taking a core slows the rate, not the work each event costs), so the bench prints both."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces


def tree_cpu_seconds(root: int) -> float:
    """User + system time of `root` and every live descendant, plus what their reaped children used."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                stats[int(entry.name)] = fields
                parents[int(entry.name)] = int(fields[1])
    total, wanted = 0, {root}
    changed = True
    while changed:  # the descendants of root
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    for pid in wanted:
        fields = stats.get(pid)
        if fields is not None:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def postgres_root() -> int | None:
    """The postmaster of the local PostgreSQL (the oldest `postgres` process), if this user sees it."""
    candidates = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(f"/proc/{entry.name}/comm").read_text().strip() == "postgres":
                    fields = _stat(int(entry.name))
                    if fields is not None:
                        candidates.append((int(fields[19]), int(entry.name)))  # start time
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return min(candidates)[1] if candidates else None


class CpuMeter:
    """CPU seconds used by some process trees between `start` and `stop`."""

    def __init__(self, **roots: int | None) -> None:
        self.roots = {name: pid for name, pid in roots.items() if pid}
        self.begin: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.begin = {name: tree_cpu_seconds(pid) for name, pid in self.roots.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {name: tree_cpu_seconds(pid) - self.begin[name] for name, pid in self.roots.items()}
        return self.used
