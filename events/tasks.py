"""Thin Celery tasks: they take ids, re-read the rows, and call the pipeline."""

from celery import shared_task

from events import pipeline


@shared_task(name="events.process_events", ignore_result=True)
def process_events(event_ids: list[int]) -> None:
    """These events, and the due events a backlog left waiting, in one batch (pipeline.claim_due)."""
    pipeline.process_batch(event_ids)


@shared_task(name="events.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return pipeline.recover()
