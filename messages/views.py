"""Public pages of a message: the one-click unsubscribe link (RFC 8058), the open pixel and the
click redirect of tracked email (messages.tracking)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messages import services, tracking
from messages.models import Delivery, TrackingHit


@csrf_exempt  # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" without a CSRF token
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    profile = services.profile_for_unsubscribe_token(token)
    if profile is None:
        return render(request, "messages/unsubscribe.html", {"invalid": True}, status=404)
    if request.method == "POST":
        services.opt_out(profile=profile, event_pkey=request.GET.get("e", "")[:64])
        return render(request, "messages/unsubscribe.html", {"done": True})
    return render(request, "messages/unsubscribe.html", {"email": profile.email})


# --- Opens and clicks (messages.tracking): public, no session, no cookies ---------------------


@require_http_methods(["GET", "HEAD"])
def tracking_open(request: HttpRequest, token: str) -> HttpResponse:
    """The pixel of an email: records an open and answers a transparent 1x1 GIF."""
    delivery = tracking.delivery_for_open(token)
    if delivery is None:
        return HttpResponseNotFound("Not found", content_type="text/plain")
    tracking.record_hit(request=request, delivery=delivery, kind=TrackingHit.Kind.OPEN)
    response = HttpResponse(tracking.PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, private"
    return response


@require_http_methods(["GET", "HEAD"])
def tracking_click(request: HttpRequest, token: str) -> HttpResponse:
    """A link of an email: records a click and redirects to the URL the delivery was rendered with."""
    return _click(request, tracking.delivery_for_click(token))


@require_http_methods(["GET", "HEAD"])
def tracking_short_link(request: HttpRequest, code: str) -> HttpResponse:
    """A short link of an SMS: as a link of an email."""
    return _click(request, tracking.delivery_for_short_link(code))


def _click(request: HttpRequest, found: tuple[Delivery, int] | None) -> HttpResponse:
    if found is None:
        return HttpResponseNotFound("Not found", content_type="text/plain")
    delivery, index = found
    tracking.record_hit(request=request, delivery=delivery, kind=TrackingHit.Kind.CLICK, link_index=index)
    response = HttpResponseRedirect(delivery.tracked_links[index])
    response["Cache-Control"] = "no-store, private"
    response["Referrer-Policy"] = "no-referrer"
    return response
