"""Settings for the benchmark only: the product's settings, plus the floor's view and the peer.

The peer (django-post-office) is installed from the `bench` extra and is never part of the product.
"""

from campaign.settings import *  # noqa: F403
from campaign.settings import INSTALLED_APPS

ROOT_URLCONF = "bench.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "DEFAULT_PRIORITY": "medium",  # queued, sent by send_queued like its cron job or worker would
    "MESSAGE_ID_ENABLED": False,
    "LOG_LEVEL": 0,  # no log row per email (our worker writes one Delivery row per email, though)
}
