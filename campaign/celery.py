"""The Celery app. Its queues, routes and the sweep's beat schedule are CELERY_* settings, read lazily,
so that a settings module may import `campaign.settings` (e.g. bench/settings.py).

Every worker also runs the events' dispatcher (events.dispatch) in a child process it supervises:
no process of its own for an operator to start. A child process, not a thread of the worker's main
process: that process forks its pool's processes, and a forked copy of a live database connection
is not safe to inherit. Spawned, not forked, for the same reason."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading

from celery import Celery, Task, bootsteps
from celery.signals import task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")

app = Celery("campaign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["campaign", "events", "messages"])

logger = logging.getLogger("events.dispatch")


@task_prerun.connect
def _recycle_database_connections(sender: Task, **kwargs: object) -> None:
    """A task starts as a request does: a connection past CONN_MAX_AGE, or broken, is replaced
    (CELERY_DB_REUSE_MAX keeps Celery from closing every connection after every task). Not for
    a task run eagerly, inside its caller's transaction."""
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()


def _dispatcher_main(poll: float) -> None:
    """The dispatcher's process: Django set up afresh, then the loop until the worker that started
    it is gone or asks it to stop (SIGTERM)."""
    import signal

    import django

    django.setup()
    from events import dispatch

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's Ctrl-C is the worker's to handle
    parent = multiprocessing.parent_process()
    logger.info("events dispatcher started (pid %s)", os.getpid())
    dispatch.run(
        should_stop=lambda: stopping.is_set() or (parent is not None and not parent.is_alive()), poll=poll
    )


class DispatcherSupervisor:
    """Runs the dispatcher in a child process of the worker, and starts it again if it dies."""

    RESTART_DELAY_SECONDS = 0.5

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.process: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="events-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        context = multiprocessing.get_context("spawn")
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = context.Process(
                    target=_dispatcher_main, args=(self.poll,), name="events-dispatcher"
                )
                self.process.start()
            self.process.join()
            if self._stopping.is_set():
                return
            logger.warning(
                "the events dispatcher (pid %s) exited with %s; starting it again",
                self.process.pid,
                self.process.exitcode,
            )
            self._stopping.wait(self.RESTART_DELAY_SECONDS)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
        self._thread.join(timeout)


class EventDispatcherStep(bootsteps.StartStopStep):
    """Starts the dispatcher with the worker (unless EVENT_DISPATCHER is off) and stops it with it."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.supervisor: DispatcherSupervisor | None = None

    def start(self, worker):
        from django.conf import settings

        if settings.EVENT_DISPATCHER:
            self.supervisor = DispatcherSupervisor(poll=settings.DISPATCH_POLL_SECONDS)
            self.supervisor.start()

    def stop(self, worker):
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None


app.steps["worker"].add(EventDispatcherStep)
