"""Transactional messages: the editable draft, the immutable versions made on publish, and a
Delivery row for every attempt to send (events and proofs alike).

Nothing here points at the events app: an event configuration declares its message
(`configuration.message`, read back here as `message.configuration`) and an event declares the
deliveries it caused (`event.deliveries`), each relation in the app above, pointing down."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from messages.channels import channel as channel_of
from messages.channels import channel_choices
from messages.provider_kinds import kind_choices

PROVIDER_POSITION_MAX = 999
PROVIDER_RATE_LIMIT_MAX = 100_000  # as messages.providers.configured bounds a setting's


class TransactionalMessage(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        PAUSED = "paused", "Paused"

    # Chosen with the event configuration at creation and never changed: the message reads its own.
    channel = models.CharField(max_length=8, choices=channel_choices, editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    # The working draft. Events are always sent with `live_version`, never with these fields.
    subject = models.CharField(max_length=998, blank=True)
    html = models.TextField("HTML", blank=True)
    text = models.TextField(blank=True)
    title = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    from_name = models.CharField(max_length=200, blank=True)
    from_address = models.EmailField(blank=True)
    reply_to = models.EmailField(blank=True)
    variants = models.JSONField(
        default=dict, blank=True, help_text='Language variants: {"fr": {"subject": ..., "html": ...}}.'
    )
    # Opens and clicks (messages.tracking), for channels that track (email: on unless switched off;
    # SMS: clicks, if the message opts in): part of the published content, so what was published is
    # what is tracked. A new message takes its channel's defaults (Channel.tracking_fields).
    track_opens = models.BooleanField(
        "Track opens", default=True, help_text="A 1x1 image at the end of the HTML part records each open."
    )
    track_clicks = models.BooleanField(
        "Track clicks",
        default=True,
        help_text="The links go through a signed redirect that records each click (email: the HTML "
        "part's web links, unsubscribe, mailto: and tel: links left as written).",
    )
    live_version = models.ForeignKey(
        "MessageVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["configuration__organization__slug", "configuration__name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="draft") | models.Q(live_version__isnull=False),
                name="message_live_has_version",
            )
        ]

    def __str__(self) -> str:
        return f"Message of {self.configuration.event_id}"

    # The draft's content columns: each channel's parts name the one that holds them (messages.channels).
    CONTENT_COLUMNS = ("subject", "html", "text", "title", "body")
    # The fields of the editable draft; the status and live version belong to the lifecycle services.
    DRAFT_FIELDS = (
        "subject",
        "html",
        "text",
        "title",
        "body",
        "from_name",
        "from_address",
        "reply_to",
        "variants",
        "track_opens",
        "track_clicks",
    )

    def load_content(self, content: dict) -> None:
        """Set the draft from a content dictionary (the inverse of draft_content)."""
        for column in self.CONTENT_COLUMNS:
            setattr(self, column, "")
        for part in channel_of(self.channel).parts:
            setattr(self, part.draft_column, str(content.get(part.name) or ""))
        sender = content.get("from") or {}
        self.from_name = str(sender.get("name", ""))
        self.from_address = str(sender.get("address", ""))
        self.reply_to = str(content.get("replyTo") or "")
        self.variants = content.get("variants") or {}
        self.track_opens, self.track_clicks = channel_of(self.channel).tracking_switches(content)

    def draft_content(self) -> dict[str, object]:
        """The draft as the content dictionary that versions, rendering and import/export share."""
        content: dict[str, object] = {
            part.name: getattr(self, part.draft_column) for part in channel_of(self.channel).parts
        }
        if self.from_name or self.from_address:
            content["from"] = {"name": self.from_name, "address": self.from_address}
        if self.reply_to:
            content["replyTo"] = self.reply_to
        if self.variants:
            content["variants"] = self.variants
        tracking = channel_of(self.channel).tracking_content(opens=self.track_opens, clicks=self.track_clicks)
        if tracking is not None:
            content["tracking"] = tracking
        return content

    @property
    def published_version(self) -> "MessageVersion | None":
        """The version events are sent with (or kept for, while paused); none once unpublished, though
        `live_version` still names the last one (a publication without edits reuses it)."""
        return None if self.status == self.Status.DRAFT else self.live_version

    @property
    def has_unpublished_changes(self) -> bool:
        return self.live_version is None or self.live_version.content != self.draft_content()


class MessageVersion(models.Model):
    """A published snapshot of a message's content. Never changed after it is made."""

    message = models.ForeignKey(TransactionalMessage, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="version_unique_number")]

    def __str__(self) -> str:
        return f"v{self.number}"


class Delivery(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        TEMPORARY_FAILURE = "temporaryFailure", "Temporary failure"
        PERMANENT_FAILURE = "permanentFailure", "Permanent failure"

    # Its own index would repeat the first column of (organization, -created_at): one index fewer
    # to write per send.
    organization = models.ForeignKey(
        "campaign.Organization", on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    message = models.ForeignKey(TransactionalMessage, on_delete=models.CASCADE, related_name="deliveries")
    version = models.ForeignKey(MessageVersion, on_delete=models.SET_NULL, null=True, blank=True)
    is_proof = models.BooleanField(default=False)
    channel = models.CharField(max_length=8, choices=channel_choices)
    recipient = models.CharField(max_length=4096)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    provider_message_id = models.CharField(max_length=998, blank=True)
    provider_response = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # With several providers (messages.providers): the one that answered, and each attempt of the
    # send in order ({"provider", "outcome", "response"}); "" and [] with a single backend.
    provider = models.CharField(max_length=64, blank=True, default="")
    attempts = models.JSONField(default=list, blank=True)
    # Drawn at render time, before the send (the row comes later, in the recording statement): the
    # tracking links carry it, signed (messages.tracking). "" when the delivery is not tracked.
    tracking_id = models.CharField(max_length=24, blank=True, default="", editable=False)
    # The original URLs of the rewritten links, by link index: a click is redirected to one of these.
    tracked_links = models.JSONField(default=list, blank=True, editable=False)
    # What was sent, as rendered (each part bounded by RENDER_MAX_OUTPUT_CHARS): the execution list
    # shows it. Stored rather than rendered again on view, since a profile or a template filter can
    # change after the send; PostgreSQL compresses large values itself (TOAST).
    content = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["tracking_id"],
                condition=~models.Q(tracking_id=""),
                name="delivery_unique_tracking_id",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            # A provider's webhook (a late bounce) finds its delivery by the provider's message id.
            models.Index(
                fields=["provider_message_id"],
                condition=~models.Q(provider_message_id=""),
                name="delivery_provider_message_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}: {self.outcome}"


class ProviderEvent(models.Model):
    """What an email service provider said later about a delivery, by webhook (messages.provider_events):
    a bounce, a complaint, a deferral... one row per provider event, deduplicated by the provider's
    event id (providers send the same one more than once)."""

    class Kind(models.TextChoices):
        HARD_BOUNCE = "hardBounce", "Hard bounce"
        SOFT_BOUNCE = "softBounce", "Soft bounce"
        COMPLAINT = "complaint", "Spam complaint"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"
        DELIVERED = "delivered", "Delivered"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        OTHER = "other", "Other"

    organization = models.ForeignKey("campaign.Organization", on_delete=models.CASCADE, related_name="+")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="provider_events")
    provider = models.CharField(max_length=40)  # anymail's ESP name: "Postmark", "Mailgun"...
    # The provider's event id; one derived from the event's content when the provider gives none.
    provider_event_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    occurred_at = models.DateTimeField(null=True, blank=True)  # when the provider says it happened
    description = models.CharField(max_length=1000, blank=True)
    quarantined = models.BooleanField(default=False)  # whether it quarantined the address
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["organization", "created_at"])]
        constraints = [
            # Per organization: another organization's ESP account (its own webhook route) cannot
            # take an event id first and have the real event dropped as a repeat.
            models.UniqueConstraint(
                fields=["organization", "provider", "provider_event_id"], name="provider_event_unique_id_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} of delivery {self.delivery_id}"


class TrackingHit(models.Model):
    """One open or click of a tracked delivery (messages.tracking). Its event is reached through the
    delivery (`delivery.event_link.event`): the link to events is declared in the events app."""

    class Kind(models.TextChoices):
        OPEN = "open", "Open"
        CLICK = "click", "Click"

    organization = models.ForeignKey("campaign.Organization", on_delete=models.CASCADE, related_name="+")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tracking_hits")
    message = models.ForeignKey(TransactionalMessage, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(
        MessageVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=5, choices=Kind.choices)
    link_index = models.PositiveSmallIntegerField(null=True, blank=True)
    url = models.CharField(max_length=2048, blank=True)
    # The first human open (or click) of the delivery, hence of its event: what "unique" counts.
    first = models.BooleanField(default=False)
    # A link scanner, a prefetch or an open right after the send: kept, but never counted as unique.
    automated = models.BooleanField(default=False)
    automated_reason = models.CharField(max_length=40, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["version", "created_at"]),
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["delivery", "kind"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "kind"],
                condition=models.Q(first=True),
                name="tracking_one_first_per_kind",
            ),
            models.CheckConstraint(
                condition=~(models.Q(first=True) & models.Q(automated=True)), name="tracking_first_is_human"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of delivery {self.delivery_id}"


class MessageStatusChange(models.Model):
    """One line of a message's history: a status move (publish, pause, resume, unpublish) or an
    action that keeps the status (a proof), with who did it (none: the command line)."""

    message = models.ForeignKey(TransactionalMessage, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12)
    to_status = models.CharField(max_length=12)
    action = models.CharField(max_length=20)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    version_number = models.PositiveIntegerField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action}: {self.from_status} -> {self.to_status}"


class DraftTry(models.Model):
    """A draft (and the live version) tried on the last N real events of its configuration
    (messages.draft_try): stored pending, filled by a worker, kept a day (`expires_at`), then
    purged with the history (events.retention). Nothing is sent; the result is all that is kept."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey("campaign.Organization", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(TransactionalMessage, on_delete=models.CASCADE, related_name="tries")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    size = models.PositiveIntegerField()  # N: the last N events asked for
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    draft_content = models.JSONField(default=dict)  # the draft as it stood when the try was asked
    live_number = models.PositiveIntegerField(null=True, blank=True)  # the live version's, if any
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Try of {self.size} events ({self.status})"


class SmsReceipt(models.Model):
    """A delivery receipt of an SMS provider (an SMPP `deliver_sm` receipt, a Twilio status callback),
    kept as it came. Joined to its delivery by the provider's message id when the delivery is
    already written (a receipt may outrun the recording of its send: `delivery` stays empty then,
    and the delivery still finds it by `message_id`: messages.sms_replies.receipts_of)."""

    # Which provider said it: "smpp", "twilio" for the installation's (SMPP_*, TWILIO_* settings), or
    # an organization's provider's own key ("smpp:org5:12": messages.sms_replies.provider_key).
    provider = models.CharField(max_length=64)
    # Whose receipt it is: the owner of the provider it came through, or the organization of the
    # delivery it was joined to; null: not known yet (an installation's receipt before its delivery).
    organization = models.ForeignKey(
        "campaign.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message_id = models.CharField(max_length=128, db_index=True)
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, null=True, blank=True, related_name="sms_receipts"
    )
    status = models.CharField(max_length=32)  # as the provider says it: DELIVRD, UNDELIV, delivered...
    error_code = models.CharField(max_length=32, blank=True)
    raw = models.TextField(blank=True)  # the receipt's text (SMPP) or form (Twilio), bounded
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # A provider repeating a receipt (concurrently, too) keeps one row: sms_replies.record_receipt.
            # Two SMSCs numbering their messages alike are two providers (two keys): two rows.
            models.UniqueConstraint(
                fields=["organization", "provider", "message_id", "status", "error_code"],
                condition=models.Q(organization__isnull=False),
                name="sms_receipt_unique_org",
            ),
            models.UniqueConstraint(
                fields=["provider", "message_id", "status", "error_code"],
                condition=models.Q(organization__isnull=True),
                name="sms_receipt_unique_unknown",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.message_id}: {self.status}"


class OrganizationProvider(models.Model):
    """One provider of an organization for one channel (messages.org_providers): its enabled
    providers of a channel, in `position` order, send that organization's messages with failover
    and their rate limits; an organization with none uses the settings' (EMAIL_PROVIDERS...).

    The kind is one of a fixed list (messages.provider_kinds), never a dotted path. `options` are
    the kind's non-secret fields; its secrets (passwords, tokens, keys) are one JSON object encrypted
    with campaign.encryption, never shown back."""

    organization = models.ForeignKey(
        "campaign.Organization", on_delete=models.CASCADE, related_name="message_providers"
    )
    channel = models.CharField(max_length=8, choices=channel_choices, editable=False)
    name = models.SlugField(
        max_length=64, help_text="Shown on each delivery it sends (letters, digits, - and _)."
    )
    position = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(PROVIDER_POSITION_MAX)],
        help_text="The order of failover: the lowest is tried first.",
    )
    kind = models.CharField(max_length=32, choices=kind_choices)
    options = models.JSONField(default=dict, blank=True, editable=False)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    rate_limit = models.FloatField(
        "rate limit",
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(PROVIDER_RATE_LIMIT_MAX)],
        help_text="Messages per second at most, shared by every worker (0: none).",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "channel", "position", "id"]
        verbose_name = "provider"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "channel", "name"], name="organization_provider_unique_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"
