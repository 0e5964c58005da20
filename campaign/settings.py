"""The one settings module: every knob is read once from the environment, with a safe default.

The defaults give a working product on a bare machine: SQLite under var/, an embedded Celery broker
(kombu's filesystem transport under var/) and emails written as files under var/mail.
"""

import os
import sys
from pathlib import Path
from typing import NoReturn

import environ
from kombu import Queue

from campaign import secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _stop(reason: str) -> NoReturn:
    """End any process that loads these settings with one line, no traceback, and exit code 3: the
    code gunicorn reads as "worker failed to boot", so that even a bare `gunicorn campaign.wsgi` stops
    instead of restarting its workers forever (deploy/gunicorn.conf.py stops before any worker)."""
    print(reason, file=sys.stderr, flush=True)
    raise SystemExit(3)


# --- Environment file and secret key ---------------------------------------------------------
# ENV_FILE: a file of VAR=value lines (deploy/production.env.example) read before anything else, so
# that gunicorn, celery and manage.py all take their settings from it; the process environment wins.
ENV_FILE = env.str("ENV_FILE", default="")
if ENV_FILE:
    if not os.access(ENV_FILE, os.R_OK):
        _stop(f"ENV_FILE {ENV_FILE} cannot be read (missing, or not readable by this user)")
    environ.Env.read_env(ENV_FILE)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# No key lives in the repository. Unset, a random key is generated once into var/ (mode 600) and
# kept, and `check --deploy` refuses it: production sets one SECRET_KEY shared by every machine.
SECRET_KEY = env.str("SECRET_KEY", default="")
SECRET_KEY_FILE = None if SECRET_KEY else VAR_DIR / "secret_key"
if SECRET_KEY_FILE is not None:
    try:
        SECRET_KEY = secret_key.generated(SECRET_KEY_FILE)
    except OSError as error:
        _stop(f"SECRET_KEY is not set and {SECRET_KEY_FILE} cannot be used: {error.strerror}")
if not DEBUG and (_refusal := secret_key.refusal(SECRET_KEY)):
    # One line and a non-zero exit from any process (a traceback would bury the reason).
    _stop(f"{SECRET_KEY_FILE} is damaged: delete it for a new one" if SECRET_KEY_FILE else _refusal)
# Former keys, still accepted for signed values (sessions, unsubscribe links) after a rotation.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# Fernet keys (comma-separated, the first encrypts) of the secrets stored encrypted (campaign.encryption).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The public base URL of this server, echoed as `serverUrl` by the API; empty: taken from the request.
PUBLIC_URL = env.str("PUBLIC_URL", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "anymail",
    "campaign",
    "events",
    "messages.apps.TransactionalConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "campaign.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "campaign.urls"
# Flash messages live in the session (server side): a new credential's one-time secret is one of
# them, and must not travel in a readable cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
WSGI_APPLICATION = "campaign.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'campaign.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the worker read while the other writes; the timeout rides out
    # short write locks instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            # Take the write lock when a transaction starts, so that concurrent writers queue on the
            # timeout instead of failing at once when a read upgrades to a write.
            "transaction_mode": "IMMEDIATE",
        }
    )
    # A file, not memory, so that the end-to-end tests' web and worker processes share it.
    # One file per test run, so that concurrent runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-campaign-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve the admin's files straight from the apps when collectstatic has not run (the demo).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_STORAGE", default="django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Email -----------------------------------------------------------------------------------
# EMAIL_URL (smtp://user:pass@host:port, consolemail://, filemail://...) wins; else EMAIL_HOST and/or
# EMAIL_PORT choose SMTP (host default localhost, port default 25); else emails are written as files
# under var/mail so that the demo needs no server.
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
elif env.str("EMAIL_HOST", default="") or env.str("EMAIL_PORT", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env.str("EMAIL_HOST", default="") or "localhost"
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="campaign.email_files.EmailBackend")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# An email service provider through django-anymail: EMAIL_BACKEND=anymail.backends.postmark.EmailBackend
# (any backend anymail has) and its settings as ANYMAIL_<NAME> variables, e.g. ANYMAIL_POSTMARK_SERVER_TOKEN,
# ANYMAIL_WEBHOOK_SECRET=user:password (the tracking webhooks under /anymail/ answer 404 without it);
# "true"/"false" become booleans (IGNORE_RECIPIENT_STATUS...).
ANYMAIL: dict[str, object] = {
    name.removeprefix("ANYMAIL_"): {"true": True, "false": False}.get(value.strip().lower(), value)
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_")
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")

# --- Several providers per channel: failover and rate limits (messages/providers.py) ----------
# <CHANNEL>_PROVIDERS (JSON in the environment): providers tried in order, each
# {"name", "backend" (dotted path; email: a Django email backend, SMTP by default; SMS and push:
# a backend class of messages.channels, SMS_BACKEND / PUSH_BACKEND by default), "options" (the
# backend's keyword arguments; each unset one: its setting below), "rate_limit" (messages per
# second, 0: none)}. Empty: the single-provider settings. `manage.py check` names a wrong entry.
EMAIL_PROVIDERS = env.json("EMAIL_PROVIDERS", default=[])
SMS_PROVIDERS = env.json("SMS_PROVIDERS", default=[])
PUSH_PROVIDERS = env.json("PUSH_PROVIDERS", default=[])
# A provider failing for its own reason this many sends in a row is set aside this long.
PROVIDER_FAILURES_BEFORE_COOLDOWN = env.int("PROVIDER_FAILURES_BEFORE_COOLDOWN", default=3)
PROVIDER_COOLDOWN_SECONDS = env.float("PROVIDER_COOLDOWN_SECONDS", default=60.0)
# An organization's own providers (admin, messages.models.OrganizationProvider): hosts and URLs that
# resolve to private, loopback or link-local addresses, and http:// URLs, are refused unless this is on
# (development, tests).
PROVIDER_ALLOW_PRIVATE_TARGETS = env.bool("PROVIDER_ALLOW_PRIVATE_TARGETS", default=False)
# Where the failure counts, cool-downs and rate windows are shared by every worker process and
# machine: REDIS_URL, else the Celery broker when it is Redis; none: per process (one worker only).
PROVIDERS_REDIS_URL = env.str("PROVIDERS_REDIS_URL", default="") or env.str("REDIS_URL", default="")

# --- Channels (messages/channels/<name>.py: one object per channel) ---------------------------
# The registered channels, as dotted paths of their objects. Not read from the environment: a
# channel is code, added with its module (the README's "Adding a channel").
TRANSACTIONAL_CHANNELS = [
    "messages.channels.email.EMAIL",
    "messages.channels.sms.SMS",
    "messages.channels.push.PUSH",
]

# --- SMS and push gateways -------------------------------------------------------------------
SMS_BACKEND = env.str("SMS_BACKEND", default="messages.channels.sms.FileSmsBackend")
SMS_GATEWAY_URL = env.str("SMS_GATEWAY_URL", default="")
SMS_GATEWAY_TOKEN = env.str("SMS_GATEWAY_TOKEN", default="")
# SMPP (messages.channels.smpp.SmppSmsBackend): one transceiver bind per worker process.
SMPP_HOST = env.str("SMPP_HOST", default="127.0.0.1")
SMPP_PORT = min(max(env.int("SMPP_PORT", default=2775), 1), 65535)
SMPP_SYSTEM_ID = env.str("SMPP_SYSTEM_ID", default="")
SMPP_PASSWORD = env.str("SMPP_PASSWORD", default="")
SMPP_SYSTEM_TYPE = env.str("SMPP_SYSTEM_TYPE", default="")
SMPP_SOURCE_ADDR = env.str("SMPP_SOURCE_ADDR", default="")  # when the message names no SMS sender
SMPP_TIMEOUT_SECONDS = min(max(env.float("SMPP_TIMEOUT_SECONDS", default=10.0), 0.1), 120.0)
# Twilio (messages.channels.twilio_sms.TwilioSmsBackend) and its webhooks (/webhooks/twilio/...).
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM = env.str("TWILIO_FROM", default="")  # when the message names no SMS sender
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="https://api.twilio.com")
TWILIO_TIMEOUT_SECONDS = min(max(env.float("TWILIO_TIMEOUT_SECONDS", default=10.0), 0.1), 60.0)
# The public URL this site is reached at by Twilio (status callbacks are signed over it), e.g.
# https://campaign.example.com; "" = no status callback asked, signatures checked against the request.
TWILIO_WEBHOOK_BASE_URL = env.str("TWILIO_WEBHOOK_BASE_URL", default="")
PUSH_BACKEND = env.str("PUSH_BACKEND", default="messages.channels.push.FilePushBackend")
PUSH_GATEWAY_URL = env.str("PUSH_GATEWAY_URL", default="")
PUSH_GATEWAY_TOKEN = env.str("PUSH_GATEWAY_TOKEN", default="")
# PUSH_BACKEND=messages.channels.push.FcmPushBackend: Firebase Cloud Messaging v1 (messages.channels.fcm).
FCM_SERVICE_ACCOUNT_FILE = env.str("FCM_SERVICE_ACCOUNT_FILE", default="")  # path of the JSON key
FCM_SERVICE_ACCOUNT_JSON = env.str("FCM_SERVICE_ACCOUNT_JSON", default="")  # or its content
FCM_PROJECT_ID = env.str("FCM_PROJECT_ID", default="")  # default: the service account's project_id
FCM_BASE_URL = env.str("FCM_BASE_URL", default="https://fcm.googleapis.com")
FCM_TIMEOUT_SECONDS = min(max(env.float("FCM_TIMEOUT_SECONDS", default=10.0), 0.1), 60.0)
FCM_RETRY_AFTER_MAX_SECONDS = min(max(env.float("FCM_RETRY_AFTER_MAX_SECONDS", default=3600.0), 0.0), 86400.0)
CHANNEL_OUTBOX_DIR = str(VAR_DIR / "outbox")

# --- Celery ----------------------------------------------------------------------------------
_broker_in = VAR_DIR / "broker" / "queue"
_broker_processed = VAR_DIR / "broker" / "processed"
_broker_control = VAR_DIR / "broker" / "control"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in (_broker_in, _broker_processed, _broker_control):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_in),
        "data_folder_out": str(_broker_in),
        "processed_folder": str(_broker_processed),
        "store_processed": False,
        "control_folder": str(_broker_control),
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Celery's Django fix-up closes the database connections after every task unless told to reuse
# them: a new PostgreSQL connection (a server process forked) per task. They are reused, and kept
# or closed as a request's are, by CONN_MAX_AGE and CONN_HEALTH_CHECKS (campaign.celery).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Losing the broker must never fail an accepted POST: the event is stored, and the sweep re-enqueues.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TRANSACTIONAL_QUEUE = env.str("CELERY_TRANSACTIONAL_QUEUE", default="transactional")
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=5.0)
SWEEP_BATCH_SIZE = env.int("SWEEP_BATCH_SIZE", default=500)
# A plain `celery -A campaign worker` consumes both queues; a dedicated worker can take `-Q transactional`.
CELERY_TASK_QUEUES = (Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(CELERY_TRANSACTIONAL_QUEUE))
CELERY_TASK_ROUTES = {
    "events.process_events": {"queue": CELERY_TRANSACTIONAL_QUEUE},
    "events.sweep": {"queue": CELERY_TRANSACTIONAL_QUEUE},
}
# --- Reports: hourly rollups ----------------------------------------------------------------
# The beat recomputes the hours touched since its last run this often (events.rollups); reports
# are this much behind at most. The grace re-reads changes committed late around the last run.
ROLLUP_INTERVAL_SECONDS = env.float("ROLLUP_INTERVAL_SECONDS", default=60.0)
ROLLUP_GRACE_SECONDS = env.float("ROLLUP_GRACE_SECONDS", default=300.0)

# --- Status webhooks (events.webhooks) -----------------------------------------------------------
# The beat stores the notifications of what happened since its last run, then sends the due ones.
WEBHOOK_INTERVAL_SECONDS = env.float("WEBHOOK_INTERVAL_SECONDS", default=2.0)
# Changes committed later than the time they carry (a worker's group recorded late) are re-read.
WEBHOOK_SCAN_GRACE_SECONDS = env.float("WEBHOOK_SCAN_GRACE_SECONDS", default=30.0)
# Retries: the first after this many seconds, each next one twice as late, for this long in all.
WEBHOOK_RETRY_FIRST_SECONDS = env.float("WEBHOOK_RETRY_FIRST_SECONDS", default=30.0)
WEBHOOK_RETRY_WINDOW_SECONDS = env.float("WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600.0)
# An endpoint is disabled after this many failed attempts in a row (any success resets the run).
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=50)
# A claimed notification whose outcome was not recorded within this (the sender died) goes again.
WEBHOOK_LEASE_SECONDS = env.float("WEBHOOK_LEASE_SECONDS", default=60.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Claimed at once: sent WEBHOOK_SENDS_IN_FLIGHT at a time, a batch ends well within its lease.
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=32)
WEBHOOK_SENDS_IN_FLIGHT = env.int("WEBHOOK_SENDS_IN_FLIGHT", default=8)
# Notifications (with their attempts) are kept this long, then purged by the same job; pending ones stay.
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)
WEBHOOK_MAX_ENDPOINTS = env.int("WEBHOOK_MAX_ENDPOINTS", default=10)
WEBHOOK_URL_MAX_LENGTH = env.int("WEBHOOK_URL_MAX_LENGTH", default=1000)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=64 * 1024)
# Targets on private, loopback and link-local networks are refused unless this is on (tests).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)

CELERY_BEAT_SCHEDULE = {
    "sweep": {
        "task": "events.sweep",
        "schedule": SWEEP_INTERVAL_SECONDS,
        # A sweep that waited longer than the next one is pointless: drop it.
        "options": {"expires": SWEEP_INTERVAL_SECONDS * 2},
    },
    "purge": {"task": "campaign.purge", "schedule": 3600.0, "options": {"expires": 3600.0}},
    "rollups": {
        "task": "events.refresh_rollups",
        "schedule": ROLLUP_INTERVAL_SECONDS,
        "options": {"expires": ROLLUP_INTERVAL_SECONDS},
    },
    "webhooks": {
        "task": "events.webhooks",
        "schedule": WEBHOOK_INTERVAL_SECONDS,
        "options": {"expires": WEBHOOK_INTERVAL_SECONDS * 2},
    },
}

# --- Event processing ------------------------------------------------------------------------
EVENT_LEASE_SECONDS = env.int("EVENT_LEASE_SECONDS", default=60)
EVENT_RETRY_DELAY_SECONDS = env.float("EVENT_RETRY_DELAY_SECONDS", default=30.0)
EVENT_MAX_ATTEMPTS = env.int("EVENT_MAX_ATTEMPTS", default=5)
# How many due events one task claims at once when a backlog waits (1: one event per task).
EVENT_CLAIM_BATCH = env.int("EVENT_CLAIM_BATCH", default=20)
# How long an enqueued-but-unclaimed pending event waits before the sweep enqueues it again.
EVENT_REENQUEUE_AFTER_SECONDS = env.int("EVENT_REENQUEUE_AFTER_SECONDS", default=30)
# The dispatcher (events.dispatch): a child process of each Celery worker that hands due events to
# the workers. While events flow it looks every DISPATCH_BUSY_POLL_SECONDS; idle for
# DISPATCH_IDLE_AFTER_SECONDS, it sleeps until PostgreSQL's NOTIFY or DISPATCH_POLL_SECONDS (for what
# no notification announces: scheduled events, retries). On SQLite the polls are all: keep it short.
EVENT_DISPATCHER = env.bool("EVENT_DISPATCHER", default=True)
DISPATCH_POLL_SECONDS = env.float(
    "DISPATCH_POLL_SECONDS", default=1.0 if DATABASES["default"]["ENGINE"].endswith("postgresql") else 0.2
)
DISPATCH_BUSY_POLL_SECONDS = env.float("DISPATCH_BUSY_POLL_SECONDS", default=0.01)
DISPATCH_IDLE_AFTER_SECONDS = env.float("DISPATCH_IDLE_AFTER_SECONDS", default=1.0)
DISPATCH_BATCH_LIMIT = env.int("DISPATCH_BATCH_LIMIT", default=1000)
# Sends a worker process keeps in flight, from the start of the conversation with the server to the
# commit of its record: that many SMTP conversations (each thread its own connection) overlap, and
# their records are written in groups. It is also the most a process killed at any instant sends
# again (events.pipeline). 1: one send at a time, recorded before the next.
EVENT_SENDS_IN_FLIGHT = env.int("EVENT_SENDS_IN_FLIGHT", default=8)
# While a backlog of due events waits, a worker task keeps claiming it (EVENT_CLAIM_BATCH at a time,
# the next claim made while the last events are sent) for up to this long, instead of stopping
# between two claims; 0: a task processes only its own claim.
EVENT_BATCH_SECONDS = env.float("EVENT_BATCH_SECONDS", default=5.0)
# Such a task also takes the due events handed to another task this long ago that it has not
# claimed yet (queued behind busy processes, on this machine or another): they would wait for it.
EVENT_BACKLOG_TAKEOVER_SECONDS = env.float("EVENT_BACKLOG_TAKEOVER_SECONDS", default=0.25)

# --- Bounded rendering and task time limits ---------------------------------------------------
# A message template is code a marketer writes and the server runs (on save, in previews and
# proofs, in the workers): each render of a message has a deadline and a loop budget, and each
# rendered part (and any value a template builds) an output cap. Beyond one: a form error on save,
# `deliveryFailed` at send.
RENDER_TIMEOUT_SECONDS = env.float("RENDER_TIMEOUT_SECONDS", default=2.0)
RENDER_MAX_OUTPUT_CHARS = env.int("RENDER_MAX_OUTPUT_CHARS", default=1_000_000)
RENDER_MAX_LOOP_ITERATIONS = env.int("RENDER_MAX_LOOP_ITERATIONS", default=100_000)
# A worker task (a batch of events) that runs past the soft limit stops taking events: the one in
# hand is retried later, the rest go back to the queue. Past the hard limit the pool kills it.
EVENT_TASK_SOFT_TIME_LIMIT_SECONDS = env.float("EVENT_TASK_SOFT_TIME_LIMIT_SECONDS", default=300.0)
EVENT_TASK_TIME_LIMIT_SECONDS = env.float("EVENT_TASK_TIME_LIMIT_SECONDS", default=360.0)

# --- API -------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=256 * 1024)
# Caps on every value from outside (API bodies, profile imports, preview data): a text field
# without its own maxLength, and the items of one collection (campaign.bounds).
TEXT_MAX_LENGTH = env.int("TEXT_MAX_LENGTH", default=10_000)
COLLECTION_MAX_ITEMS = env.int("COLLECTION_MAX_ITEMS", default=1_000)
API_TOKEN_TTL_SECONDS = env.int("API_TOKEN_TTL_SECONDS", default=24 * 3600)
# Requests per credential, e.g. `6000/min`; empty (the default): no limit, as the hosted API's clients expect.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="") or None
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=25)
IDEMPOTENCY_WINDOW_SECONDS = env.int("IDEMPOTENCY_WINDOW_SECONDS", default=24 * 3600)
AUTH_CACHE_SECONDS = env.int("AUTH_CACHE_SECONDS", default=60)
# How often each process re-reads the generations of its caches (campaign.generations): a revoked
# token is refused everywhere within this delay, whatever the cache backend.
GENERATION_CHECK_SECONDS = env.float("GENERATION_CHECK_SECONDS", default=0.5)
# Wrong client secrets per minute before /ims/token/v3 answers 429 slow_down (per client id, per
# address); the admin's login counts wrong passwords the same way (per username, per address).
TOKEN_FAILURES_PER_CLIENT = env.int("TOKEN_FAILURES_PER_CLIENT", default=10)
TOKEN_FAILURES_PER_ADDRESS = env.int("TOKEN_FAILURES_PER_ADDRESS", default=100)

# --- Senders and proofs -----------------------------------------------------------------------
# Proofs one user may send per minute (each recipient counts), counted in the database (campaign.senders).
PROOF_RATE_PER_MINUTE = env.int("PROOF_RATE_PER_MINUTE", default=10)

# A draft tried on the last N real events (messages.draft_try): the whole try's time budget (each
# render is bounded by RENDER_TIMEOUT_SECONDS besides); the events not reached are "not tried".
DRAFT_TRY_BUDGET_SECONDS = env.float("DRAFT_TRY_BUDGET_SECONDS", default=60.0)

# --- Retention (events.retention) -------------------------------------------------------------
# Days an event, a delivery, an open or click is kept (an organization may set its own); 0: kept
# forever. An event goes only once final and past the Idempotency-Key window. The beat purges every
# RETENTION_PURGE_INTERVAL_SECONDS, in DELETEs of RETENTION_BATCH_SIZE rows, at most
# RETENTION_MAX_BATCHES of them per table and run (the next run goes on); hourly rollups are kept.
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=90)
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=90)
TRACKING_RETENTION_DAYS = env.int("TRACKING_RETENTION_DAYS", default=90)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
RETENTION_MAX_BATCHES = env.int("RETENTION_MAX_BATCHES", default=100)
RETENTION_PURGE_INTERVAL_SECONDS = env.float("RETENTION_PURGE_INTERVAL_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE["purge-history"] = {
    "task": "events.purge_history",
    "schedule": RETENTION_PURGE_INTERVAL_SECONDS,
    "options": {"expires": RETENTION_PURGE_INTERVAL_SECONDS},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["campaign.auth.CampaignTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["campaign.auth.CredentialRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"credential": API_RATE_LIMIT},
    "EXCEPTION_HANDLER": "campaign.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Transactional messaging API",
    "DESCRIPTION": "POST events, GET their status. Compatible with Adobe Campaign Standard's API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [
        "events.api.openapi.OptionalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "POSTPROCESSING_HOOKS": ["events.api.openapi.add_event_paths"],
    # Swagger UI's files ship with the app (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Production hardening (all off under DEBUG / plain HTTP development) ---------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
X_FRAME_OPTIONS = "DENY"  # previews use srcdoc iframes, which need no framing of our pages

# --- Observability -----------------------------------------------------------------------
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")  # if set, /metrics wants `Authorization: Bearer <it>`
# Every process of this machine adds its counters to one directory, summed at scrape time.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

LOG_FORMAT = env.str("LOG_FORMAT", default="text")  # text | json
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(organization)s %(pkey)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",  # orjson: a line per accepted event
            "format": "%(asctime)s %(levelname)s %(name)s %(organization)s %(pkey)s %(message)s",
        },
    },
    "filters": {
        "event_context": {"()": "campaign.log_context.EventContextFilter"},
        "mask_addresses": {"()": "campaign.privacy.MaskAddressesFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["event_context", "mask_addresses"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
