"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py campaign.wsgi`.

Everything can be overridden on the command line or with GUNICORN_CMD_ARGS.
The settings module is read here, in the master, before any worker starts: ENV_FILE then provides
BIND, WEB_CONCURRENCY... below too, and a refused SECRET_KEY stops gunicorn with one line instead of
workers failing to boot one after the other.
"""

import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")
import campaign.settings  # noqa: E402, F401  (reads ENV_FILE, refuses a placeholder SECRET_KEY)

bind = os.environ.get("BIND", "0.0.0.0:8000")
# Threads overlap the database round trips of the API; processes use the cores.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
# No recycling by default: a worker that retires closes the keep-alive connections it holds, and a
# client sending on one at that instant gets an error for a POST that never arrived. MAX_REQUESTS
# (e.g. 10000, with 10 % jitter) brings recycling back, as a guard against a leak.
max_requests = int(os.environ.get("MAX_REQUESTS") or 0)
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("ACCESS_LOG", "-") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):
    """Tell prometheus_client that this worker's live gauges are gone (its counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
