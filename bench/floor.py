"""The framework's floor: the least a Django view can do to accept an event.

It parses the body and inserts the same row our API inserts (an `events_event`), with no
authentication, no validation and no enqueueing: what any Django implementation pays at least.
"""

import json

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from events.models import Event


@csrf_exempt
def insert_event(request: HttpRequest, organization_id: int, configuration_id: int) -> JsonResponse:
    body = json.loads(request.body)
    event = Event.objects.create(
        organization_id=organization_id,
        configuration_id=configuration_id,
        email=body.get("email", ""),
        ctx=body.get("ctx", {}),
        next_attempt_at=timezone.now(),
    )
    return JsonResponse({"PKey": event.pkey, "status": event.status}, status=201)
