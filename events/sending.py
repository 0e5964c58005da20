"""A worker process's sends in flight: its sender threads, and the soft time limit around them.

The task's thread (the main thread of a pool process) prepares each event (route, target, render)
and records the outcomes (events.pipeline); a send that waits on a server (SMTP, an HTTP gateway:
the channel backend's `waits_on_network`) runs on one of the process's sender threads, so that the
waits of several conversations overlap. Each thread keeps its own connection (the backends keep one
per thread) and never touches the database. The threads live as long as the process: a pool
process forked by Celery starts its own on first use.

The task's soft time limit (billiard's SIG_SOFT_TIMEOUT) is held back during a batch
(`soft_time_limit_held`) and taken where stopping loses nothing (`check_soft_time_limit`). The
threads block every signal, so that none interrupts a conversation with a server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from billiard.pool import SIG_SOFT_TIMEOUT
from celery.exceptions import SoftTimeLimitExceeded
from django.db import close_old_connections

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_size = 0
_recorder: ThreadPoolExecutor | None = None
_recorder_pid = 0


def _block_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def submit(size: int, function: Callable[..., T], *args: object) -> Future[T]:
    """Run `function(*args)` on one of this process's `size` sender threads."""
    global _executor, _executor_pid, _executor_size
    with _lock:
        if _executor is None or _executor_pid != os.getpid() or _executor_size != size:
            if _executor is not None and _executor_pid == os.getpid():
                _executor.shutdown(wait=False)  # a new size (a test's settings): the old threads end
            _executor = ThreadPoolExecutor(size, thread_name_prefix="sender", initializer=_block_signals)
            _executor_pid, _executor_size = os.getpid(), size
        executor = _executor
    return executor.submit(function, *args)


# Records written at once by a process: while one commits, the next group need not wait for it.
RECORDERS = 1


def record(function: Callable[..., T], *args: object) -> Future[T]:
    """Run `function(*args)` on one of this process's RECORDERS threads, each with a database
    connection of its own (Django's are per thread)."""
    global _recorder, _recorder_pid
    with _lock:
        if _recorder is None or _recorder_pid != os.getpid():
            _recorder = ThreadPoolExecutor(
                RECORDERS, thread_name_prefix="recorder", initializer=_block_signals
            )
            _recorder_pid = os.getpid()
        recorder = _recorder
    return recorder.submit(_on_recycled_connection, _task, function, *args)


_task = 0  # counts the tasks of this process that record on the recorders
_recorder_state = threading.local()


def new_task() -> None:
    """A task starts: each recorder's connection is recycled before its next write, as the task's
    thread's is (campaign.celery): past CONN_MAX_AGE, or broken, it is replaced."""
    global _task
    _task += 1


def _on_recycled_connection(task: int, function: Callable[..., T], *args: object) -> T:
    if getattr(_recorder_state, "task", None) != task:
        _recorder_state.task = task
        close_old_connections()
    return function(*args)


_struck = False  # the soft time limit came while held back


def _note_soft_time_limit(signum: int, frame: object) -> None:
    global _struck
    _struck = True


@contextlib.contextmanager
def soft_time_limit_held() -> Iterator[None]:
    """Hold back the task's soft time limit while a batch runs: it strikes only where the batch
    calls `check_soft_time_limit` (between events), never between a send and the record of that
    send, which a later attempt would otherwise send again. Renders have their own deadline
    (RENDER_TIMEOUT_SECONDS), sends theirs (EMAIL_TIMEOUT, the gateways' timeouts), and the hard
    time limit stays the backstop.

    The limit's signal is noted instead of raising (Python runs a handler on the main thread,
    whichever thread the signal reached); one noted after the last event is recorded is spent
    here: the batch is done."""
    global _struck
    if SIG_SOFT_TIMEOUT is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(SIG_SOFT_TIMEOUT, _note_soft_time_limit)
    _struck = False
    try:
        yield
    finally:
        signal.signal(SIG_SOFT_TIMEOUT, previous)
        _struck = False


def check_soft_time_limit() -> None:
    """Raise SoftTimeLimitExceeded if the soft time limit came while it was held back."""
    global _struck
    if _struck:
        _struck = False
        raise SoftTimeLimitExceeded()
