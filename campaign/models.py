"""The marketing database every app shares: organizations, their API credentials and tokens,
their members (admin users), their sender domains and proof allow-list, profiles and the quarantine."""

import hashlib
import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from campaign import addresses

ORGANIZATION_ID_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
    "An organization id is 1 to 63 letters, digits, '-' or '_', starting with a letter or digit.",
)

# Top-level paths of our own: an organization with one of these ids would shadow them.
RESERVED_ORGANIZATION_IDS = frozenset({"admin", "api", "ims", "static", "healthz", "readyz", "metrics", "u"})


def validate_not_reserved(value: str) -> None:
    if value.lower() in RESERVED_ORGANIZATION_IDS:
        raise ValidationError(f"'{value}' is reserved; choose another organization id.")


def hash_secret(value: str) -> str:
    """SHA-256 of a random, high-entropy secret or token.

    Secrets and tokens are 256-bit random strings, so a fast hash is as safe as a slow one here and
    keeps authentication off the hot path's CPU budget; comparison is by hash lookup plus
    `hmac.compare_digest`.
    """
    return hashlib.sha256(value.encode()).hexdigest()


RETENTION_MAX_DAYS = 36_500


def validate_time_zone(name: str) -> None:
    if name and name not in zoneinfo.available_timezones():
        raise ValidationError(f"'{name}' is not a time zone name (e.g. Europe/Paris, America/New_York).")


def validate_sms_sender(value: str) -> None:
    if not value:
        return
    try:
        normalised = addresses.sms_sender(value)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    if normalised != value:
        raise ValidationError(f"Write the sender as it is sent: {normalised}.")


class Organization(models.Model):
    slug = models.CharField(
        "organization id",
        max_length=63,
        unique=True,
        validators=[ORGANIZATION_ID_VALIDATOR, validate_not_reserved],
    )
    name = models.CharField(max_length=200, blank=True)
    sender_name = models.CharField(max_length=200, blank=True, help_text="Default From name (brand).")
    sender_address = models.EmailField(blank=True, help_text="Default From address.")
    sms_sender = models.CharField(
        "SMS sender",
        max_length=16,
        blank=True,
        default="",
        db_default="",  # code of the previous release, which knows no such column, still inserts
        validators=[validate_sms_sender],
        help_text="The sender of this organization's SMS when a message names none: an E.164 number "
        "(+33612345678), a short code (12345) or 1 to 11 letters and digits (ACME). Empty: the provider's.",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",  # code of the previous release, which knows no such column, still inserts
        validators=[validate_time_zone],
        help_text="The time zone of this organization's reports, e.g. Europe/Paris (empty: TIME_ZONE).",
    )
    # This organization's retention, in days (empty: the installation's *_RETENTION_DAYS setting).
    event_retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(RETENTION_MAX_DAYS)],
        help_text="Days final events are kept (empty: the installation's setting).",
    )  # fmt: skip
    delivery_retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(RETENTION_MAX_DAYS)],
        help_text="Days deliveries are kept (empty: the installation's setting).",
    )  # fmt: skip
    tracking_retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(RETENTION_MAX_DAYS)],
        help_text="Days opens and clicks are kept (empty: the installation's setting).",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def api_name(self) -> str:
        """The transactional API's name in URLs: `mc` + organization id."""
        return f"mc{self.slug}"


class Membership(models.Model):
    """Ties an admin user to the one organization whose objects they see."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization}"


def new_api_key() -> str:
    return secrets.token_hex(16)


class ApiCredential(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=200, blank=True)
    api_key = models.CharField(max_length=64, unique=True, default=new_api_key, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True, help_text="Untick to revoke the key and all its tokens.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.organization.slug}: {self.name or self.api_key}"


class AccessToken(models.Model):
    credential = models.ForeignKey(ApiCredential, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"token of {self.credential} until {self.expires_at:%Y-%m-%d %H:%M}"


# A profile's opt-out flag per channel.
OPT_OUT_COLUMNS = {"email": "opted_out_email", "sms": "opted_out_sms", "push": "opted_out_push"}


class Profile(models.Model):
    """A person of the marketing database, the target of profile-based messages."""

    # The profile's fields by the name events, files and templates use -> their column.
    STANDARD_COLUMNS = {
        "email": "email",
        "firstName": "first_name",
        "lastName": "last_name",
        "mobilePhone": "mobile_phone",
        "language": "language",
    }
    STANDARD_FIELDS = tuple(STANDARD_COLUMNS)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="profiles")
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=200, blank=True)
    last_name = models.CharField(max_length=200, blank=True)
    mobile_phone = models.CharField(max_length=32, blank=True)
    language = models.CharField(max_length=16, blank=True)
    # Opted out of a channel: profile-based messages of that channel are not sent to it (the
    # "address on denylist" typology rule, events.typology); event-based messages still are.
    opted_out_email = models.BooleanField("opted out of email", default=False)
    opted_out_sms = models.BooleanField("opted out of SMS", default=False)
    opted_out_push = models.BooleanField("opted out of push", default=False)
    blocklisted = models.BooleanField(default=False)
    is_test = models.BooleanField(
        "test profile",
        default=False,
        help_text="Proofs may be sent to it, and marketers see it (only its address) on the proof page.",
    )
    data = models.JSONField(default=dict, blank=True, help_text="Other profile fields, by name.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=~models.Q(email=""),
                name="profile_unique_email_per_organization",
            )
        ]
        indexes = [models.Index(fields=["organization", "mobile_phone"])]

    def __str__(self) -> str:
        return self.email or self.mobile_phone or f"profile {self.pk}"

    def clean(self) -> None:
        """The mobile phone in E.164, as events carry it and proofs compare it (campaign.addresses)."""
        if self.mobile_phone:
            try:
                self.mobile_phone = addresses.phone_number(self.mobile_phone)
            except ValueError as error:
                raise ValidationError({"mobile_phone": str(error)}) from None

    def opted_out_of(self, channel: str) -> bool:
        """Opted out of this channel (`email`, `sms`, `push`); a channel without a flag: no."""
        return bool(getattr(self, OPT_OUT_COLUMNS.get(channel, ""), False))

    @property
    def opted_out(self) -> bool:
        """Opted out of every channel (what the single flag of earlier versions meant)."""
        return all(getattr(self, column) for column in OPT_OUT_COLUMNS.values())

    def as_context(self) -> dict[str, object]:
        """The plain data a message template sees as `profile`."""
        return {
            **self.data,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "mobilePhone": self.mobile_phone,
            "language": self.language,
        }


class SenderDomain(models.Model):
    """A domain the organization may send from: every message's From and Reply-To address must be
    in one of its declared domains (exact match: a subdomain is declared on its own)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sender_domains")
    domain = models.CharField(
        max_length=addresses.DOMAIN_MAX_LENGTH,
        help_text="e.g. geometrixx.example: From and Reply-To addresses @geometrixx.example are allowed "
        "(not its subdomains: declare each one).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "domain"], name="sender_domain_unique_per_organization"
            )
        ]

    def __str__(self) -> str:
        return self.domain

    def clean(self) -> None:
        try:
            self.domain = addresses.normalise_domain(self.domain)
        except ValidationError as error:
            raise ValidationError({"domain": error.messages}) from None


class ProofRecipient(models.Model):
    """An entry of the organization's proof allow-list: where proofs may go besides test profiles."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email address"
        DOMAIN = "domain", "Email domain (any address of it)"
        PHONE = "phone", "Mobile phone (SMS)"
        PUSH = "push", "Push registration token"

    VALUE_MAX_LENGTH = 1024

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="proof_recipients")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EMAIL)
    value = models.CharField(
        max_length=VALUE_MAX_LENGTH,
        help_text="qa@geometrixx.example, geometrixx.example (a whole domain, not its subdomains), "
        "+33612345678, or a registration token.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        verbose_name = "proof allow-list entry"
        verbose_name_plural = "proof allow-list"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind", "value"], name="proof_recipient_unique_per_organization"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"

    def clean(self) -> None:
        """The value in the form it is compared in (see campaign.addresses)."""
        value = (self.value or "").strip()
        try:
            if self.kind == self.Kind.EMAIL:
                value = addresses.normalise_email(value)
            elif self.kind == self.Kind.DOMAIN:
                value = addresses.normalise_domain(value)
            elif self.kind == self.Kind.PHONE:
                try:
                    value = addresses.phone_number(value)
                except ValueError as error:
                    raise ValidationError(str(error)) from None
            elif not value or any(c.isspace() or not c.isprintable() for c in value):
                raise ValidationError("A registration token is one word of printable characters.")
        except ValidationError as error:
            raise ValidationError({"value": error.messages}) from None
        self.value = value


QUARANTINE_ADDRESS_MAX_LENGTH = 4096  # events.models.Event.registration_token


class Quarantine(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        PUSH = "push", "Push"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="quarantines")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # As long as any address a channel takes: a push registration token (events.Event's column).
    address = models.CharField(max_length=QUARANTINE_ADDRESS_MAX_LENGTH)
    # What the uniqueness and the lookups use: a PostgreSQL btree entry holds ~2700 bytes, not 4096.
    address_digest = models.CharField(max_length=64, editable=False)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "channel", "address_digest"],
                name="quarantine_unique_address",
                violation_error_message="This address is already quarantined: an entry already exists.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}"

    def save(self, *args, **kwargs) -> None:
        self.address_digest = self.digest_of(self.address)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "address" in update_fields:
            kwargs["update_fields"] = {*update_fields, "address_digest"}
        super().save(*args, **kwargs)

    @staticmethod
    def digest_of(address: str) -> str:
        """The key an address is found by, whatever its case (the quarantine ignores case)."""
        return hashlib.sha256(address.lower().encode()).hexdigest()

    def clean(self) -> None:
        self.address_digest = self.digest_of(self.address or "")

    def validate_constraints(self, exclude=None) -> None:
        # A form has no digest field: the address it has stands for it, so the duplicate is a form error.
        if exclude and "address" not in exclude:
            exclude = set(exclude) - {"address_digest"}
        super().validate_constraints(exclude)


class CacheGeneration(models.Model):
    """A named counter that writers bump when cached reads of that name go stale (a revoked token):
    every process compares it at most every GENERATION_CHECK_SECONDS (campaign.generations)."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} #{self.value}"


class FailureWindow(models.Model):
    """Attempts of one kind from one source in one minute (campaign.throttling): failed logins or
    secrets, proofs sent; counted in the database so that every process of every machine sees the
    same count."""

    key = models.CharField(max_length=200)
    window = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="unique_failure_window")]
        indexes = [models.Index(fields=["window"])]

    def __str__(self) -> str:
        return f"{self.key} at {self.window:%H:%M}: {self.count}"


RESOURCE_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_]{0,63}$", "Use letters, digits and '_', starting with a letter (at most 64)."
)


class CustomResource(models.Model):
    """A lookup table of an organization (a product catalogue): rows found by their key, imported
    whole from a CSV file (`import_resource`), joined to events' collections by their configuration
    (events.enrichment)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="resources")
    name = models.CharField(max_length=64, validators=[RESOURCE_NAME_VALIDATOR])
    key_column = models.CharField(max_length=64, help_text="The column whose value finds a row.")
    columns = models.JSONField(default=list, help_text="The columns of the rows, in the file's order.")
    row_count = models.PositiveIntegerField(default=0)
    imported_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="resource_unique_name")]

    def __str__(self) -> str:
        return self.name


class CustomResourceRow(models.Model):
    """One row of a custom resource, by its key (the unique index is the lookup's)."""

    resource = models.ForeignKey(CustomResource, on_delete=models.CASCADE, related_name="rows")
    key = models.CharField(max_length=255)
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["resource", "key"], name="resource_row_unique_key")]

    def __str__(self) -> str:
        return self.key
