"""Addresses kept out of logs and error texts: `jane@example.com` is written `j***@example.com`,
`+33612345678` `+336******78`. Enough to tell a colleague which domain or country failed, not
enough to read a person's address off a log aggregator."""

from __future__ import annotations

import logging
import re

_EMAIL = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*@([A-Za-z0-9.-]+)")
_PHONE = re.compile(r"\+(\d{3})\d{4,}(\d{2})\b")


def mask_address(address: str) -> str:
    """One address (email, phone or push token), masked."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if address.startswith("+") and address[1:].isdigit():
        return mask_addresses(address)
    return f"{address[:4]}***" if len(address) > 8 else "***"


def mask_addresses(text: str) -> str:
    """Every email address and E.164 phone number in a free text (a provider's answer), masked."""
    if "@" not in text and "+" not in text:  # neither can be there: spare every log line the regexes
        return text
    text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(lambda m: f"+{m.group(1)}{'*' * (len(m.group(0)) - 6)}{m.group(2)}", text)


class MaskAddressesFilter(logging.Filter):
    """The last line of defence: whatever a log line says, the addresses in it are masked."""

    EXTRAS = ("reason",)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_addresses(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_addresses(logging.Formatter().formatException(record.exc_info))
        for name in self.EXTRAS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, mask_addresses(value))
        return True
