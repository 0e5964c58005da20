"""Event configurations (the event types administrators define and publish), their fields, and
the events (instances) that web developers POST, with their status history."""

import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete
from django.dispatch import receiver

from campaign.models import CustomResource, Organization, Profile
from messages import lifecycle
from messages.channels import channel_choices

EVENT_ID_PREFIX = "EVT"
EVENT_ID_MAX_LENGTH = 64
EVENT_NAME_MAX_LENGTH = EVENT_ID_MAX_LENGTH - len(EVENT_ID_PREFIX)
NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_]*$", "Use letters, digits and '_', starting with a letter."
)


def format_event_id(name: str) -> str:
    """`cartAbandonment` -> `EVTcartAbandonment`: the one place an event id is made."""
    return f"{EVENT_ID_PREFIX}{name}"


def event_name_from_id(event_id: str) -> str | None:
    """`EVTcartAbandonment` -> `cartAbandonment`; None when the id lacks the prefix."""
    if not event_id.startswith(EVENT_ID_PREFIX) or len(event_id) <= len(EVENT_ID_PREFIX):
        return None
    return event_id[len(EVENT_ID_PREFIX) :]


class Targeting(models.TextChoices):
    EVENT = "event", "Real-time event (recipient in the event)"
    PROFILE = "profile", "Profile (reconciled with the marketing database)"


class FieldType(models.TextChoices):
    TEXT = "text", "Text"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal"
    BOOLEAN = "boolean", "Boolean"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    EMAIL = "email", "Email"
    URL = "url", "URL"


class EventConfiguration(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="configurations")
    name = models.CharField(
        max_length=EVENT_NAME_MAX_LENGTH,
        validators=[NAME_VALIDATOR],
        help_text="The event id is EVT + this name (the prefix is added if you omit it).",
    )
    label = models.CharField(max_length=200, blank=True)
    # The registered channels (messages.channels): a callable, so a new channel needs no migration.
    channel = models.CharField(max_length=8, choices=channel_choices, default="email")
    targeting = models.CharField(max_length=8, choices=Targeting.choices, default=Targeting.EVENT)
    reconciliation_event_field = models.CharField(
        max_length=64, blank=True, help_text="Profile targeting: the event field that identifies the profile."
    )
    reconciliation_profile_field = models.CharField(
        max_length=64, blank=True, help_text="Profile targeting: the profile field it matches (e.g. email)."
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    # Profile targeting: the typology whose rules its messages pass (events.typology); none: the
    # organization's default typology.
    typology = models.ForeignKey(
        "Typology",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="configurations",
        help_text="Profile targeting: the typology its messages pass. Empty: the organization's default.",
    )
    # The schema the API enforces, frozen at publication; later edits wait for the next publish.
    published_schema = models.JSONField(null=True, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Unpublishing a message takes its endpoint down too; publishing that message again brings the
    # endpoint back, but never one an administrator unpublished on purpose.
    unpublished_with_message = models.BooleanField(default=False, editable=False)
    # The event's message, made on first publish (declared here so that messages never point at
    # events; `message.configuration` reads it back). It goes when its configuration goes (below);
    # deleting a draft message leaves the configuration without one until the next publish.
    message = models.OneToOneField(
        "transactional.TransactionalMessage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="configuration",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="configuration_unique_name"),
            models.CheckConstraint(
                condition=models.Q(status="draft") | models.Q(published_schema__isnull=False),
                name="configuration_published_has_schema",
            ),
        ]

    def __str__(self) -> str:
        return self.event_id

    @property
    def event_id(self) -> str:
        return format_event_id(self.name)

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED

    def endpoint_path(self) -> str:
        return f"/{self.organization.slug}/campaign/{self.organization.api_name}/{self.event_id}"


@receiver(post_delete, sender=EventConfiguration, dispatch_uid="events.configuration_takes_its_message")
def _delete_the_message_with_its_configuration(sender, instance: EventConfiguration, **kwargs) -> None:
    """A configuration's message is deleted with it, whatever deletes the configuration (the admin,
    an organization's deletion): a message without its event would be an orphan nobody can reach."""
    message = instance.message  # fetched by the key the deleted instance still holds
    if message is not None:
        lifecycle.delete(message)


class EventField(models.Model):
    """One data field of an event; with a `collection` name it is a field of that collection's items."""

    configuration = models.ForeignKey(EventConfiguration, on_delete=models.CASCADE, related_name="fields")
    collection = models.CharField(
        max_length=64,
        blank=True,
        validators=[NAME_VALIDATOR],
        help_text="Empty for a field of ctx; a collection name for a field of that list's items.",
    )
    name = models.CharField(max_length=64, validators=[NAME_VALIDATOR])
    label = models.CharField(max_length=200, blank=True)
    type = models.CharField(max_length=10, choices=FieldType.choices, default=FieldType.TEXT)
    required = models.BooleanField(default=False)
    max_length = models.PositiveIntegerField(null=True, blank=True, help_text="Text fields only.")
    values = models.JSONField(
        default=list, blank=True, help_text='Allowed values as a JSON list, e.g. ["gold", "silver"].'
    )
    sensitive = models.BooleanField(
        default=False,
        help_text="Its value is stored encrypted and shown as *** (API answers, admin, exports, logs); "
        "only the message sent carries it.",
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["collection", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["configuration", "collection", "name"], name="field_unique_name_in_collection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.collection}.{self.name}" if self.collection else self.name


class Enrichment(models.Model):
    """A join that adds data to an event's message without targeting anyone (events.enrichment):

    * `profile`: an event field (in ctx) matched to a profile field, so that an event-based message
      may use `profile.*` (the message still goes to the event's recipient, and never counts for
      fatigue: it stays event-based);
    * `resource`: the items of a collection joined by a key field to the rows of a custom resource,
      so that `{% for item in ctx.items %}{{ item.product.title }}{% endfor %}` shows the row.

    A match that is missing renders as empty, or, if `required`, ends the event `targetingFailed`.
    Frozen with the schema at publication, like the fields."""

    class Kind(models.TextChoices):
        PROFILE = "profile", "Profile (event field = profile field)"
        RESOURCE = "resource", "Custom resource (collection item's key = resource row)"

    configuration = models.ForeignKey(
        EventConfiguration, on_delete=models.CASCADE, related_name="enrichments"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.RESOURCE)
    collection = models.CharField(
        max_length=64, blank=True, help_text="Resource: the collection whose items are joined (e.g. items)."
    )
    event_field = models.CharField(
        max_length=64,
        help_text="Profile: the event field (in ctx). Resource: the items' key field (e.g. sku).",
    )
    profile_field = models.CharField(
        max_length=64, blank=True, help_text="Profile: the profile field (e.g. email)."
    )
    resource = models.ForeignKey(
        CustomResource, on_delete=models.RESTRICT, null=True, blank=True, related_name="enrichments"
    )
    name = models.CharField(
        max_length=64,
        blank=True,
        validators=[NAME_VALIDATOR],
        help_text="Resource: what templates call the row in each item (item.<name>); "
        "empty: the resource's name.",
    )
    required = models.BooleanField(
        default=False, help_text="A missing match ends the event targetingFailed (else it renders as empty)."
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.kind == self.Kind.PROFILE:
            return f"ctx.{self.event_field} = profile.{self.profile_field}"
        return f"ctx.{self.collection}[].{self.event_field} = {self.resource}"

    @property
    def row_name(self) -> str:
        return self.name or (self.resource.name if self.resource is not None else "")


class ProfileSample(models.Model):
    """A test profile's sample event data (ctx) for one event type: previews and proofs for that
    profile render with it (and the profile's fields). Checked with the API's own rules."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="samples")
    configuration = models.ForeignKey(EventConfiguration, on_delete=models.CASCADE, related_name="samples")
    ctx = models.JSONField(default=dict, help_text="The event's data as the API takes it in ctx (JSON).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "test profile sample data"
        verbose_name_plural = "test profiles' sample data"
        constraints = [
            models.UniqueConstraint(fields=["profile", "configuration"], name="sample_unique_per_profile")
        ]

    def __str__(self) -> str:
        return f"{self.profile} for {self.configuration_id}"


def new_pkey() -> str:
    """Opaque and unguessable: 144 random bits, URL-safe."""
    return secrets.token_urlsafe(18)


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    PAUSED = "paused", "Paused"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    DELIVERY_FAILED = "deliveryFailed", "Delivery failed"
    ROUTING_FAILED = "routingFailed", "Routing failed"
    TOO_OLD = "tooOld", "Too old"
    TARGETING_FAILED = "targetingFailed", "Targeting failed"


class Event(models.Model):
    Status = EventStatus

    pkey = models.CharField("PKey", max_length=32, unique=True, default=new_pkey, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="events")
    # Indexed as the first column of event_list_idx; its own index would be one more write per move.
    configuration = models.ForeignKey(
        EventConfiguration, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    email = models.CharField(max_length=254, blank=True)
    mobile_phone = models.CharField(max_length=32, blank=True)
    push_platform = models.CharField(max_length=8, blank=True)
    registration_token = models.CharField(max_length=4096, blank=True)
    application = models.CharField(max_length=255, blank=True)
    # The values of the sensitive fields are "***" in ctx; this holds them, encrypted
    # (events.sensitive: a Fernet token of [[path, value], ...]), "" when the event has none.
    ctx = models.JSONField(default=dict)
    sensitive_ctx = models.TextField(blank=True, default="", editable=False)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    expiration_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the event is next due for processing (scheduled date, retry time, or re-enqueue time).
    next_attempt_at = models.DateTimeField()
    # When it was last handed to the broker; the sweep re-enqueues a due event whose enqueue is stale.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    profile = models.ForeignKey(Profile, on_delete=models.SET_NULL, null=True, blank=True)
    message_version = models.ForeignKey(
        "transactional.MessageVersion", on_delete=models.SET_NULL, null=True, blank=True
    )
    # The sends of this event (a message's deliveries that are not proofs), linked from here.
    deliveries = models.ManyToManyField(
        "transactional.Delivery", through="EventDelivery", related_name="events", blank=True
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # The failed event this one sends again (an administrator's "send again"): each keeps its own
    # final status, and each page links to the other.
    sent_again_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_again_as"
    )
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="event_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=models.Q(expiration_at__isnull=True)
                | models.Q(scheduled_at__isnull=True)
                | models.Q(expiration_at__gte=models.F("scheduled_at")),
                name="event_expiration_after_scheduled",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=EventStatus.values), name="event_status_valid"
            ),
        ]
        indexes = [
            # The sweep: due pending events and expired leases.
            models.Index(fields=["status", "next_attempt_at"], name="event_due_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="event_lease_idx"),
            # The API's list, newest first (by id, which is also its cursor's order), per type, and
            # per type and status: a page reads its rows, whatever the size of the history.
            models.Index(fields=["configuration", "-id"], name="event_list_idx"),
            models.Index(fields=["configuration", "status", "-id"], name="event_status_list_idx"),
            # The rollup job: events whose status moved since its last run (events.rollups).
            models.Index(fields=["updated_at"], name="event_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.pkey

    @property
    def event_id(self) -> str:
        return self.configuration.event_id

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_queued(self) -> bool:
        """Waiting for an attempt or in one: its next attempt, enqueue and lease times mean something."""
        return self.status in (Event.Status.PENDING, Event.Status.PROCESSING)


FINAL_STATUSES = frozenset(
    {
        Event.Status.PROCESSED,
        Event.Status.IGNORED,
        Event.Status.DELIVERY_FAILED,
        Event.Status.ROUTING_FAILED,
        Event.Status.TOO_OLD,
        Event.Status.TARGETING_FAILED,
    }
)


class EventDelivery(models.Model):
    """Which event a delivery sent. Deliveries belong to messages (a proof has no event), so the link
    is declared here, in the app above, rather than as a column of the delivery; one row per
    delivery (its key), written in the same statement as the delivery (events.statements)."""

    delivery = models.OneToOneField(
        "transactional.Delivery", on_delete=models.CASCADE, primary_key=True, related_name="event_link"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="delivery_links")

    class Meta:
        verbose_name = "event delivery"

    def __str__(self) -> str:
        return f"{self.event_id}: delivery {self.delivery_id}"


class EventStatusChange(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    # The stable reason code (events.reasons; the README's table); the reason above is for people.
    code = models.CharField(max_length=80, blank=True)
    # A claim's worker (host:pid), written with the claim: the timeline's "which worker".
    worker = models.CharField(max_length=100, blank=True)
    # The message version a worker routed the event to (its number), on the move that ended the attempt.
    version_number = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class ConfigurationStatusChange(models.Model):
    """One line of an event type's history: published or unpublished, by whom (none: the command line)."""

    configuration = models.ForeignKey(
        EventConfiguration, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=12)
    to_status = models.CharField(max_length=12)
    action = models.CharField(max_length=20)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action}: {self.from_status} -> {self.to_status}"


# Upper bounds (seconds) of the end-to-end latency buckets a rollup counts (the Prometheus
# histogram's, campaign.metrics.EVENT_LATENCY), plus one bucket past the last.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class RollupCounts(models.Model):
    """The counts of one hour (UTC, by the events' reception) for one event type and message version."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    configuration = models.ForeignKey(EventConfiguration, on_delete=models.CASCADE, related_name="+")
    # None: events not routed to a version (routing failed, or not sent yet).
    version = models.ForeignKey(
        "transactional.MessageVersion", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    hour = models.DateTimeField()
    received = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    delivery_failed = models.PositiveIntegerField(default=0)
    routing_failed = models.PositiveIntegerField(default=0)
    too_old = models.PositiveIntegerField(default=0)
    targeting_failed = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)  # delivery attempts handed to the channel
    delivered = models.PositiveIntegerField(default=0)  # attempts the channel accepted
    bounced_hard = models.PositiveIntegerField(default=0)  # permanent failures
    bounced_soft = models.PositiveIntegerField(default=0)  # temporary failures (each attempt)
    opened = models.PositiveIntegerField(default=0)
    opened_unique = models.PositiveIntegerField(default=0)
    clicked = models.PositiveIntegerField(default=0)
    clicked_unique = models.PositiveIntegerField(default=0)
    unsubscribed = models.PositiveIntegerField(default=0)
    # Final events per latency bucket (LATENCY_BUCKETS, then one for longer).
    latency_buckets = models.JSONField(default=list)
    # {status: [[reason, count], ...]}: the most frequent reasons of each failure status.
    failure_reasons = models.JSONField(default=dict)

    class Meta:
        abstract = True


class HourlyRollup(RollupCounts):
    """What reports read instead of the events, so a report costs the same whatever the history
    holds. Written only by the periodic job (events.rollups), which recomputes whole hours: the
    hour's events, plus what was retired of it (RetiredCounts) before events were deleted."""

    channel = models.CharField(max_length=8, choices=channel_choices)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hour", "configuration_id", "version_id"]
        constraints = [
            models.UniqueConstraint(
                "configuration", Coalesce("version", 0), "hour", name="rollup_unique_hour"
            )
        ]
        indexes = [
            models.Index(fields=["organization", "hour"], name="rollup_organization_idx"),
            models.Index(fields=["configuration", "hour"], name="rollup_configuration_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.configuration_id} v{self.version_id or '-'} {self.hour:%Y-%m-%d %H}:00"


class RetiredCounts(RollupCounts):
    """The counts of events (and their rows) deleted by a purge or a person's erasure, written by
    events.rollups.retire() in the deleting transaction: the job adds them to their hour, so
    rollups keep counting what is gone. No person's data: counts only."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "retired counts"
        indexes = [models.Index(fields=["hour"], name="retired_hour_idx")]

    def __str__(self) -> str:
        return f"retired {self.configuration_id} v{self.version_id or '-'} {self.hour:%Y-%m-%d %H}:00"


class RollupProgress(models.Model):
    """The rollup job's one row: when its last run started (the hours touched since are redone).
    Locked by the job alone, never by a worker."""

    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollups computed at {self.last_run_at}"


class Unsubscription(models.Model):
    """An opt-out through the unsubscribe link of an event's message (the link carries the event's
    PKey): counted as `unsubscribed` in the reports of the version that sent it. Once per event."""

    event = models.OneToOneField(
        Event, on_delete=models.CASCADE, primary_key=True, related_name="unsubscription"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.event_id} unsubscribed"


class DispatcherSleep(models.Model):
    """The dispatchers' one row: until when one of them waits for a NOTIFY rather than polling fast.
    The events table's trigger NOTIFYs only while this is in the future (migration
    0009_dispatch_notify): a NOTIFY serialises the commits of every transaction that sends one, so
    the POSTs pay for it only when a dispatcher is idle, not while events flow (events.dispatch).
    A dispatcher that dies asleep leaves a date that soon passes."""

    asleep_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"a dispatcher sleeps until {self.asleep_until}" if self.asleep_until else "dispatchers awake"


# --- Typology and fatigue rules (events.typology) -----------------------------------------------------

TYPOLOGY_CODE_VALIDATOR = RegexValidator(
    r"^[a-z][a-z0-9_]*$", "Use lower-case letters, digits and '_', starting with a letter."
)
DUPLICATE_WINDOW_MAX_MINUTES = 7 * 24 * 60  # a week
FATIGUE_MAX_MESSAGES = 1000
FATIGUE_MAX_PERIOD_HOURS = 366 * 24  # a year
FILTER_MAX_CONDITIONS = 20
FILTER_VALUE_MAX_LENGTH = 200


class Typology(models.Model):
    """A set of typology rules that profile-based messages pass before they are rendered. Every
    organization has a default one (made with it); a configuration may pick another."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="typologies")
    name = models.CharField(max_length=100)
    is_default = models.BooleanField(
        "default", default=False, help_text="The typology of configurations that pick none."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "typologies"
        ordering = ["organization__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="typology_unique_name"),
            models.UniqueConstraint(
                fields=["organization"], condition=models.Q(is_default=True), name="typology_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TypologyRule(models.Model):
    """One rule of a typology: a profile filter, or the duplicate rule. ("Address on denylist" is
    built in and always applies first; it has no row.)"""

    class Kind(models.TextChoices):
        FILTER = "filter", "Profile filter (excludes the profiles that match)"
        DUPLICATE = "duplicate", "Duplicate (same event type, profile and ctx within a window)"

    class Combine(models.TextChoices):
        AND = "and", "all conditions (and)"
        OR = "or", "any condition (or)"

    typology = models.ForeignKey(Typology, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveSmallIntegerField(default=0, help_text="Rules apply in this order.")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.FILTER)
    code = models.CharField(
        max_length=40,
        validators=[TYPOLOGY_CODE_VALIDATOR],
        help_text="The stable reason code of the events it excludes (e.g. no_minors).",
    )
    name = models.CharField(max_length=100, help_text="Shown with the code on the events it excludes.")
    active = models.BooleanField(default=True)
    window_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=f"Duplicate: the window, in minutes (1 to {DUPLICATE_WINDOW_MAX_MINUTES}).",
    )
    combine = models.CharField(
        max_length=3,
        choices=Combine.choices,
        default=Combine.AND,
        help_text="Filter: how its conditions combine.",
    )

    class Meta:
        ordering = ["typology", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["typology", "code"], name="typology_rule_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.name}"


class FilterCondition(models.Model):
    """One condition of a profile filter: a profile field, an operator, a value."""

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        NOT_EQUALS = "notEquals", "does not equal"
        CONTAINS = "contains", "contains"
        STARTS_WITH = "startsWith", "starts with"
        IS_EMPTY = "isEmpty", "is empty"
        IS_NOT_EMPTY = "isNotEmpty", "is not empty"
        GREATER_THAN = "greaterThan", "greater than (number)"
        LESS_THAN = "lessThan", "less than (number)"

    rule = models.ForeignKey(TypologyRule, on_delete=models.CASCADE, related_name="conditions")
    position = models.PositiveSmallIntegerField(default=0)
    field = models.CharField(
        max_length=64,
        help_text="A profile field: email, firstName, lastName, mobilePhone, language, or one of its data.",
    )
    operator = models.CharField(max_length=12, choices=Operator.choices, default=Operator.EQUALS)
    value = models.CharField(max_length=FILTER_VALUE_MAX_LENGTH, blank=True)

    class Meta:
        ordering = ["rule", "position", "id"]

    def __str__(self) -> str:
        return f"{self.field} {self.operator} {self.value}"


class FatigueRule(models.Model):
    """At most `max_messages` profile-based messages per profile per `period_hours`, on one channel or
    on all; every profile-based message of the organization counts, event-based ones never."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="fatigue_rules")
    name = models.CharField(max_length=100)
    channel = models.CharField(
        max_length=8, choices=channel_choices, blank=True, help_text="Empty: counts and caps every channel."
    )
    max_messages = models.PositiveIntegerField(help_text=f"1 to {FATIGUE_MAX_MESSAGES}.")
    period_hours = models.PositiveIntegerField(help_text=f"1 to {FATIGUE_MAX_PERIOD_HOURS} (24: a day).")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["organization__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="fatigue_rule_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ProfileSend(models.Model):
    """A profile-based message admitted for sending (written under the profile's lock before the
    send): what the duplicate and fatigue rules count. It counts while its event is pending,
    processing or processed; one that ends failed stops counting."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="profile_send")
    configuration = models.ForeignKey(EventConfiguration, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8)
    ctx_digest = models.CharField(max_length=64)
    admitted_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["profile", "admitted_at"], name="profile_send_window_idx")]

    def __str__(self) -> str:
        return f"{self.event_id} to profile {self.profile_id}"


class WebhookEndpoint(models.Model):
    """Where an organization wants its status notifications (events.webhooks): a URL, the kinds it
    wants, and the secret the notifications are signed with (stored encrypted: campaign.encryption)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField("URL", max_length=2048, help_text="https://... (no private or loopback address)")
    description = models.CharField(max_length=200, blank=True)
    final_statuses = models.BooleanField(
        default=True, help_text="An event reached its final status (processed, ignored, deliveryFailed...)."
    )
    bounces = models.BooleanField(default=False, help_text="A send was refused for good (hard bounce).")
    opens = models.BooleanField(default=False, help_text="A tracked email was opened.")
    clicks = models.BooleanField(default=False, help_text="A tracked link was clicked.")
    unsubscribes = models.BooleanField(default=False, help_text="A recipient opted out through the link.")
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    # Failed attempts in a row; WEBHOOK_DISABLE_AFTER_FAILURES of them disable the endpoint.
    failures_in_a_row = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__slug", "url", "id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url


class WebhookNotification(models.Model):
    """One notification to one endpoint, stored before any send (the outbox): its id (`webhook-id`)
    and body stay the same across its attempts, so a receiver deduplicates by the id."""

    class Kind(models.TextChoices):
        STATUS = "event.status", "Final status"
        BOUNCE = "message.bounced", "Bounce"
        OPEN = "message.opened", "Open"
        CLICK = "message.clicked", "Click"
        UNSUBSCRIBE = "recipient.unsubscribed", "Unsubscribe"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retries exhausted)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # The row it tells of: an event (status), a delivery (bounce), a tracking hit, an unsubscription.
    source_id = models.BigIntegerField()
    webhook_id = models.CharField("webhook-id", max_length=40, unique=True)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When it is next due; while an attempt is in flight, when that attempt's claim runs out.
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook notification"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "kind", "source_id"], name="webhook_notification_once"
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhook_due_idx"),
            models.Index(fields=["created_at"], name="webhook_created_idx"),  # the purge
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} {self.kind}"


class WebhookAttempt(models.Model):
    """One try of a notification: the endpoint's delivery log."""

    notification = models.ForeignKey(WebhookNotification, on_delete=models.CASCADE, related_name="tries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "webhook attempt"
        indexes = [models.Index(fields=["endpoint", "-started_at"], name="webhook_attempt_log_idx")]

    def __str__(self) -> str:
        return f"{self.notification_id} at {self.started_at}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookCursor(models.Model):
    """How far the webhooks' scanner has read one source (events.webhooks.store_notifications)."""

    kind = models.CharField(max_length=24, primary_key=True)
    scanned_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} until {self.scanned_until}"
