"""`manage.py metrics_server [--port 9100]`: expose this machine's metrics (e.g. on a worker-only machine)."""

import time

from prometheus_client import start_http_server

from campaign.cli import CampaignCommand
from campaign.metrics import registry


class Command(CampaignCommand):
    help = "Serve the Prometheus metrics of this machine's processes (PROMETHEUS_MULTIPROC_DIR) over HTTP."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9100)
        # Loopback unless told otherwise: the scraper runs here, or --host opens it on purpose.
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, port: int, host: str, **options):
        start_http_server(port, addr=host, registry=registry())
        self.stdout.write(f"Serving metrics on http://{host}:{port}/metrics")
        while True:
            time.sleep(3600)
