"""Firebase Cloud Messaging HTTP v1: the OAuth access token minted (and refreshed) by google-auth
from a service account, one POST to `{FCM_BASE_URL}/v1/projects/{project}/messages:send` per push,
and FCM's answer classified the way the pipeline decides (sent, temporary, permanent).

* 2xx: sent; the message id is FCM's `name` (projects/<id>/messages/<n>).
* `UNREGISTERED` (404), `INVALID_ARGUMENT` (400) naming the registration token, `SENDER_ID_MISMATCH`:
  the token is dead, a permanent failure that quarantines it (its later events end `ignored`).
* Any other 400: the message is wrong, a permanent failure that leaves the token usable.
* `QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503), other 5xx, network errors: temporary, retried with
  backoff, never sooner than the answer's Retry-After (capped at FCM_RETRY_AFTER_MAX_SECONDS).
* 401: the access token is refreshed once and the send tried once more; a second 401 (or a 403:
  the service account may not send) is temporary: the operator fixes the credentials, retries go.

Every temporary failure above is the provider's fault (messages.providers: the next provider of
PUSH_PROVIDERS is tried); a dead token or a wrong message is not.

Every request is bounded by FCM_TIMEOUT_SECONDS (the token exchange too). The backend is shared by
the worker's sender threads: the token is refreshed under a lock, each thread has its own session.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import requests
import urllib3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from google.oauth2 import service_account

from messages.channels import SendResult
from messages.channels.http import written_then_lost

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"
FCM_MAX_TTL_SECONDS = 28 * 24 * 3600  # FCM keeps a message four weeks at most
DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
RETRIED_CODES = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}
MAX_ANSWER_BYTES = 65536  # FCM's answers are small; more is not read


def service_account_info(content: str | dict[str, Any], path: str = "") -> dict[str, Any]:
    """The service account's JSON: `content` (its text, or the object), else the file at `path`
    (FCM_SERVICE_ACCOUNT_JSON, FCM_SERVICE_ACCOUNT_FILE by default: FcmPushBackend)."""
    if not content and path:
        try:
            content = Path(path).read_text()
        except OSError as error:
            raise ImproperlyConfigured(f"FCM_SERVICE_ACCOUNT_FILE cannot be read: {error}") from None
    if not content:
        raise ImproperlyConfigured(
            "the FCM backend needs FCM_SERVICE_ACCOUNT_JSON or FCM_SERVICE_ACCOUNT_FILE "
            "(a provider's service_account_json or service_account_file)"
        )
    if isinstance(content, dict):
        info: Any = content
    else:
        try:
            info = json.loads(content)
        except ValueError:
            raise ImproperlyConfigured("the FCM service account is not JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ImproperlyConfigured("the FCM credentials are not a service account's JSON")
    return info


# google-auth retries a token exchange answered 5xx, sleeping up to about 4.4 s before a retry: a
# retry never starts after the exchange's deadline, so one sleep at most runs past it.
TOKEN_RETRY_SLEEP = 5.0


class _BoundedRequest(auth_requests.Request):
    """google-auth's transport with our timeout on the token exchange (its own default is 120 s):
    the whole exchange, google-auth's own retries included, within one timeout (`start`),
    following no redirect (the signed assertion goes to the token URI only), and remembering the
    last answer's status (a failed exchange is told by its status and error code, never its body)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self._deadline = 0.0
        self.last_status: int | None = None

    def start(self) -> None:
        self._deadline = time.monotonic() + self._timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        left = min(self._timeout, self._deadline - time.monotonic()) if self._deadline else self._timeout
        if left <= 0:
            raise auth_exceptions.TransportError("the token exchange ran out of time")
        kwargs["timeout"] = left
        kwargs["allow_redirects"] = False
        self.last_status = None
        response = super().__call__(*args, **kwargs)
        self.last_status = response.status
        return response


_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


def token_failure(error: Exception, status: int | None) -> str:
    """What a failed token exchange says: its HTTP status and OAuth error code (e.g. invalid_grant),
    nothing of the answer's body (the token URI's host might echo what it was sent)."""
    code = ""
    for arg in getattr(error, "args", ())[1:2]:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str) and _ERROR_CODE.match(arg["error"]):
            code = arg["error"]
    shown = ", ".join(p for p in (f"HTTP {status}" if status else "", code) if p)
    return f"no FCM access token: {error.__class__.__name__}" + (f" ({shown})" if shown else "")


def ttl_seconds(expires_at: dt.datetime | None, now: dt.datetime) -> int | None:
    """The time to live of a push that must not arrive after `expires_at` (None: FCM's default)."""
    if expires_at is None:
        return None
    return max(1, min(FCM_MAX_TTL_SECONDS, int((expires_at - now).total_seconds())))


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, within the setting's cap."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None = None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = max(0.0, (when - now).total_seconds())
    return min(seconds, float(settings.FCM_RETRY_AFTER_MAX_SECONDS))


def classify(status: int, body: str, headers: Any, now: dt.datetime) -> SendResult:
    """FCM's answer as a SendResult (the module's docstring lists the rules)."""
    try:
        answer = json.loads(body or "{}")
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if 200 <= status < 300:
        return SendResult(
            SENT, provider_message_id=str(answer.get("name") or ""), provider_response=f"{status}"
        )
    found = answer.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    codes = {str(d.get("errorCode")) for d in details if d.get("errorCode")}
    codes.add(str(error.get("status") or ""))
    fields = {
        str(v.get("field")) for d in details for v in d.get("fieldViolations") or [] if isinstance(v, dict)
    }
    message = str(error.get("message") or "")
    code = next(
        (c for c in ("UNREGISTERED", "SENDER_ID_MISMATCH", "QUOTA_EXCEEDED", "UNAVAILABLE") if c in codes), ""
    )
    code = code or str(error.get("status") or "")
    response = f"{status} {code}: {message}".strip()[:500]
    names_token = "message.token" in fields or "registration token" in message.lower()
    if codes & DEAD_TOKEN_CODES or ("INVALID_ARGUMENT" in codes and names_token):
        return SendResult(PERMANENT, provider_response=f"the registration token is dead: {response}")
    if status == 429 or status >= 500 or codes & RETRIED_CODES:
        return SendResult(
            TEMPORARY,
            provider_response=response,
            retry_after=retry_after(headers.get("Retry-After"), now),
            provider_fault=True,
        )
    if status in (401, 403):
        return SendResult(
            TEMPORARY, provider_response=f"FCM refused the credentials: {response}", provider_fault=True
        )
    return SendResult(PERMANENT, provider_response=response, quarantines=False)


def send_seconds(timeout: float) -> float:
    """The longest one send can take: a token exchange (its retries within one timeout), the POST,
    and after a 401 a second exchange and POST."""
    return 2 * (float(timeout) + TOKEN_RETRY_SLEEP) + 2 * float(timeout)


class FcmClient:
    """One Firebase project's sender: its credentials (refreshed when due) and the messages:send URL."""

    def __init__(
        self,
        *,
        service_account_json: str | dict[str, Any],
        service_account_file: str,
        project_id: str,
        base_url: str,
        timeout: float,
    ) -> None:
        info = service_account_info(service_account_json, service_account_file)
        try:
            self.credentials = service_account.Credentials.from_service_account_info(info, scopes=[FCM_SCOPE])
        except (ValueError, KeyError) as error:
            raise ImproperlyConfigured(f"the FCM service account is incomplete: {error}") from None
        project = project_id or info.get("project_id") or ""
        if not project:
            raise ImproperlyConfigured("no FCM project: set FCM_PROJECT_ID or use a JSON with project_id")
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._token_request = _BoundedRequest(self.timeout)  # used under the lock only

    def access_token(self, *, refused: str | None = None) -> str:
        """A valid access token; `refused`: the token FCM just answered 401 to, replaced by a new one
        (unless another thread replaced it already)."""
        with self._lock:
            credentials = self.credentials
            if not credentials.valid or (refused is not None and credentials.token == refused):
                self._token_request.start()
                credentials.refresh(self._token_request)
            return str(credentials.token)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, payload: dict[str, Any], token: str) -> tuple[int, str, Any]:
        """One POST: FCM's status, the first MAX_ANSWER_BYTES of its answer, its headers."""
        with self._session().post(
            self.url,
            data=json.dumps(payload),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; UTF-8"},
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        ) as response:
            body = response.raw.read(MAX_ANSWER_BYTES, decode_content=True) or b""
            return response.status_code, body.decode(errors="replace"), response.headers

    @property
    def max_send_seconds(self) -> float:
        return send_seconds(self.timeout)

    def send(self, payload: dict[str, Any]) -> SendResult:
        try:
            token = self.access_token()
            status, body, headers = self._post(payload, token)
            if status == 401:  # expired or revoked early: a new token, one more try
                status, body, headers = self._post(payload, self.access_token(refused=token))
        except auth_exceptions.GoogleAuthError as error:
            return SendResult(
                TEMPORARY,
                provider_response=token_failure(error, self._token_request.last_status),
                provider_fault=True,
            )
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as error:  # the body's read too
            return SendResult(
                TEMPORARY,
                provider_response=f"{error.__class__.__name__}: {str(error)[:400]}",
                provider_fault=True,
                outcome_unknown=written_then_lost(error),  # the POST written, FCM's answer lost
            )
        now = dt.datetime.now(dt.UTC)
        return classify(status, body, headers, now)
