"""An SMTP server on loopback that accepts everything and writes, per message, the time it accepted
it and the token found in its Subject (`... [bench:TOKEN]`): the end of the end-to-end latency.

Run as its own process: `python bench/smtp_sink.py PORT LOGFILE`.
"""

import re
import sys
import time

from aiosmtpd.controller import Controller

TOKEN = re.compile(rb"\[bench:([^\]]+)\]")


class Sink:
    def __init__(self, log_path: str) -> None:
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        accepted = time.time()
        match = TOKEN.search(envelope.content)
        self.log.write(f"{match.group(1).decode() if match else '-'} {accepted:.6f}\n")
        return "250 OK"


if __name__ == "__main__":
    port, log_path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(log_path), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()
