"""Who an organization may send as, and where its proofs may go.

* Sender domains: every From and Reply-To address of a message (and the organization's default
  sender) must be in a domain an administrator declared for the organization. The match is exact:
  `geometrixx.example` allows `shop@geometrixx.example`, not `shop@mail.geometrixx.example` (declare
  that subdomain on its own), so a declared domain never vouches for a host someone else may run.
* Proofs go only to the organization's test profiles and to its proof allow-list (email addresses,
  whole email domains, mobile phones, push registration tokens), at most PROOF_RATE_PER_MINUTE per
  user and minute, counted in the database so the limit holds across processes and machines.

The message editor, the configuration import and publication (messages, events) ask here.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from campaign import addresses, throttling
from campaign.models import Organization, Profile, ProofRecipient, SenderDomain

SHOWN_DOMAINS = 5  # how many declared domains an error message lists


class SenderError(Exception):
    """A bad domain, a duplicate, or an unknown one: one line for the admin or the CLI."""


def declared_domains(organization: Organization) -> list[str]:
    return list(SenderDomain.objects.filter(organization=organization).values_list("domain", flat=True))


def declare_sender_domain(*, organization: Organization, domain: str) -> SenderDomain:
    try:
        normalised = addresses.normalise_domain(domain)
    except ValidationError as error:
        raise SenderError(" ".join(error.messages)) from None
    try:
        with transaction.atomic():
            return SenderDomain.objects.create(organization=organization, domain=normalised)
    except IntegrityError:
        raise SenderError(f"{organization.slug} already has the sender domain {normalised}.") from None


def declare_default_sender_domain(organization: Organization) -> None:
    """A new organization's default sender's domain becomes its first sender domain (the admin's
    Add page and `create_organization --sender` alike)."""
    domain = addresses.domain_of(organization.sender_address)
    if domain:
        SenderDomain.objects.get_or_create(organization=organization, domain=domain)


def default_sender_problem(organization: Organization, address: str) -> str | None:
    """Why `address` cannot be the organization's default sender, if it cannot: a From like any
    other, its domain must be declared (a new organization's is declared with it)."""
    if not address:
        return None
    if not addresses.domain_of(address):
        return f"'{address}' has no valid domain name."
    if organization.pk is None:
        return None
    return _outside(address, declared_domains(organization))


def remove_sender_domain(*, organization: Organization, domain: str) -> str:
    """Messages already live keep sending; publishing one that uses the domain is refused from now on."""
    try:
        normalised = addresses.normalise_domain(domain)
    except ValidationError as error:
        raise SenderError(" ".join(error.messages)) from None
    deleted, _ = SenderDomain.objects.filter(organization=organization, domain=normalised).delete()
    if not deleted:
        raise SenderError(f"{organization.slug} has no sender domain {normalised}.")
    return normalised


def _outside(address: str, domains: list[str]) -> str | None:
    if addresses.domain_of(address) in domains:
        return None
    if not domains:
        return (
            f"'{address}' is not in a sender domain: the organization has none yet "
            "(an administrator declares them)."
        )
    listed = ", ".join(domains[:SHOWN_DOMAINS]) + (", ..." if len(domains) > SHOWN_DOMAINS else "")
    return f"'{address}' is not in the organization's sender domains ({listed})."


def sender_problems(
    *,
    organization: Organization,
    from_address: str,
    reply_to: str,
    uses_default_sender: bool = True,
    domains: list[str] | None = None,
) -> dict[str, str]:
    """{"from": why, "replyTo": why} for each address a message may not use; empty if all is well.

    A message without its own From is sent from the organization's default sender (on the channels
    that use one: `uses_default_sender`), which must then be in the domains too. `domains` spares the
    query when the caller has them."""
    if domains is None:
        domains = declared_domains(organization)
    problems: dict[str, str] = {}
    sender = from_address or (organization.sender_address if uses_default_sender else "")
    if sender:
        problem = _outside(sender, domains)
        if problem:
            if not from_address:
                problem = f"the organization's default sender is used, and {problem}"
            problems["from"] = problem
    if reply_to:
        problem = _outside(reply_to, domains)
        if problem:
            problems["replyTo"] = problem
    return problems


# --- Proofs -----------------------------------------------------------------------------------


class ProofRefused(Exception):
    """A recipient that is neither a test profile nor allow-listed, or too many proofs this minute."""


def bounded_proof_recipient(address: str) -> str:
    """A typed proof recipient, stripped and within the allow-list's size, or ProofRefused. Each
    channel (messages.channels) then puts it in the form it is compared and sent in."""
    address = address.strip()
    if len(address) > ProofRecipient.VALUE_MAX_LENGTH:
        raise ProofRefused(f"a proof recipient has at most {ProofRecipient.VALUE_MAX_LENGTH} characters")
    return address


def allow_listed(*, organization: Organization, kinds: Iterable[str], value: str) -> bool:
    """Whether the organization's proof allow-list has the (normalised) value under one of the kinds."""
    entries = ProofRecipient.objects.filter(organization=organization, kind__in=list(kinds))
    return entries.filter(value=value).exists()


def is_test_profile_address(*, organization: Organization, **lookup: str) -> bool:
    """Whether a test profile of the organization has this address (`email__iexact=...`)."""
    return Profile.objects.filter(organization=organization, is_test=True, **lookup).exists()


def proof_limit(*, organization: Organization, user_id: int | None) -> throttling.Limit:
    """Proofs are counted per user (per organization when no user asks: the shell, a script)."""
    key = f"proof:user:{user_id}" if user_id else f"proof:organization:{organization.pk}"
    return throttling.Limit(key, settings.PROOF_RATE_PER_MINUTE)


def count_proofs(*, organization: Organization, user_id: int | None, recipients: int) -> None:
    """Count `recipients` proofs for the user, or refuse them all if that passes the minute's limit."""
    limit = proof_limit(organization=organization, user_id=user_id)
    wait = throttling.consume(limit, amount=recipients)
    if wait is not None:
        raise ProofRefused(
            f"at most {limit.per_minute} proofs a minute: this would pass the limit; try again in {wait} s"
        )
