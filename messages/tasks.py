"""Thin Celery tasks of the message editor: they take ids and call the service."""

from celery import shared_task
from django.conf import settings

from messages import draft_try


@shared_task(
    name="messages.run_draft_try",
    ignore_result=True,
    # The try stops itself at its budget; past these limits it is ended (and says so).
    soft_time_limit=settings.DRAFT_TRY_BUDGET_SECONDS + 30,
    time_limit=settings.DRAFT_TRY_BUDGET_SECONDS + 60,
)
def run_draft_try(try_id: int) -> None:
    """Fill a draft try stored pending (messages.draft_try)."""
    draft_try.run(try_id)
