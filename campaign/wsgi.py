"""WSGI entry point: `gunicorn campaign.wsgi`."""

import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")
application = get_wsgi_application()

# The web process writes a log line per accepted event, and no format of ours names a source file,
# line or function: logging need not walk the stack for the caller of each line (the logging
# HOWTO's "Optimization" section).
logging._srcfile = None
