"""Housekeeping on the beat: expired access tokens and past failure windows go."""

from celery import shared_task

from campaign import services


@shared_task(name="campaign.purge", ignore_result=True)
def purge() -> dict[str, int]:
    return services.purge_expired()
