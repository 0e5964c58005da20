"""Public pages of a message: the one-click unsubscribe link (RFC 8058)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from messages import services


@csrf_exempt  # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" without a CSRF token
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    profile = services.profile_for_unsubscribe_token(token)
    if profile is None:
        return render(request, "messages/unsubscribe.html", {"invalid": True}, status=404)
    if request.method == "POST":
        services.opt_out(profile=profile, event_pkey=request.GET.get("e", "")[:64])
        return render(request, "messages/unsubscribe.html", {"done": True})
    return render(request, "messages/unsubscribe.html", {"email": profile.email})
