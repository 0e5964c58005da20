"""Small project-level views: the home redirect, the 403 page and the health probes."""

from __future__ import annotations

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme


def home(request: HttpRequest) -> HttpResponse:
    return redirect("admin:index")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A refused page in the admin's look, with a way back (the page the user came from, if it is
    ours, and the admin's home): Django's own 403 is a bare heading."""
    back = request.META.get("HTTP_REFERER", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = ""
    context = {**admin.site.each_context(request), "title": "Not allowed", "back": back}
    return render(request, "403.html", context, status=403)


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker are reachable: this process can accept events."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # any driver error means not ready
        checks["database"] = f"error: {error.__class__.__name__}"
    try:
        from campaign.celery import app

        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as error:  # kombu raises many kinds
        checks["broker"] = f"error: {error.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
