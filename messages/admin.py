"""The marketer's editor: content per channel, validation on save, a preview with sample data, the
publication buttons (Publish, Resume; Pause and Unpublish ask first on their own pages), versions
and deliveries."""

from __future__ import annotations

import json
import re

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib import messages as flash
from django.forms.fields import InvalidJSONInput
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join

from campaign import senders
from campaign.admin import (
    CSV_EXPORT_CHANGE_LIST,
    CsvExportMixin,
    OrganizationScopedAdmin,
    PeriodFilter,
    organization_of,
)
from messages import admin_views, lifecycle, services, tracking
from messages.channels import Channel
from messages.channels import channel as channel_of
from messages.lifecycle import PublicationError, event_side
from messages.models import (
    Delivery,
    MessageStatusChange,
    MessageVersion,
    TrackingHit,
    TransactionalMessage,
)
from messages.provider_history import provider_history
from messages.rendering import chosen_variant

SENDER_FIELDS = ["from_name", "from_address", "reply_to"]


def sender_fields(of_channel: Channel) -> list[str]:
    """The sender fields a channel's messages use: a sender name (email's From name, the SMS
    sender), and From and Reply-To addresses for email; none for push."""
    return [
        *(["from_name"] if of_channel.sender_name_label else []),
        *(["from_address", "reply_to"] if of_channel.uses_default_sender else []),
    ]


FIELD_TEMPLATES = "admin/transactional/transactionalmessage/fields"


class VariantsField(forms.JSONField):
    """The language variants as JSON (what the per-language editor of message_editor.js writes, and
    what a browser without script shows as text): a language given twice is an error, not a silent
    loss of one of them."""

    @staticmethod
    def repeated_key(value: object) -> str | None:
        """The first key the JSON text gives twice in an object, if any."""
        if not isinstance(value, str) or not value.strip():
            return None
        repeated: list[str] = []

        def pairs(items: list) -> dict:
            seen: dict = {}
            for key, item in items:
                if key in seen:
                    repeated.append(key)
                seen[key] = item
            return seen

        try:
            json.loads(value, object_pairs_hook=pairs)
        except (ValueError, RecursionError):
            return None  # the JSON field's own error follows
        return repeated[0] if repeated else None

    def to_python(self, value):
        repeated = self.repeated_key(value)
        if repeated is not None:
            raise forms.ValidationError(f"The language {repeated} is given twice: keep one of its variants.")
        return super().to_python(value)

    def bound_data(self, data, initial):
        # Shown again as posted: parsed and dumped, one of the two would vanish from the page.
        if self.repeated_key(data) is not None:
            return InvalidJSONInput(data)
        return super().bound_data(data, initial)


class TransactionalMessageForm(forms.ModelForm):
    class Meta:
        model = TransactionalMessage
        fields = [
            *TransactionalMessage.CONTENT_COLUMNS, *SENDER_FIELDS, "variants", "track_opens", "track_clicks",
        ]  # fmt: skip
        widgets = {
            # Subjects and titles are long templates: the admin's 20em input hides most of them.
            "subject": forms.TextInput(attrs={"class": "vLargeTextField"}),
            "title": forms.TextInput(attrs={"class": "vLargeTextField"}),
            "html": forms.Textarea(attrs={"rows": 14, "cols": 100, "class": "vLargeTextField"}),
            "text": forms.Textarea(attrs={"rows": 6, "cols": 100}),
            "body": forms.Textarea(attrs={"rows": 4, "cols": 100}),
        }
        field_classes = {"variants": VariantsField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            of_channel = channel_of(self.instance.channel)
            # Each part of the message's channel, under its own label, in the draft column keeping it.
            for part in of_channel.parts:
                if part.draft_column in self.fields and part.label:
                    self.fields[part.draft_column].label = part.label
            if "from_name" in self.fields:
                self.fields["from_name"].label = of_channel.sender_name_label
                if not of_channel.uses_default_sender:
                    self.fields["from_name"].help_text = (
                        "The name or number the message shows as its sender (most networks show up to "
                        "11 letters and digits). Empty: the organization's sender name."
                    )
            if "variants" in self.fields:
                example = ", ".join(f'"{key}": ...' for key in of_channel.content_keys)
                self.fields["variants"].help_text = (
                    f'Language variants, by language code: {{"fr": {{{example}}}}}. A part a variant '
                    "leaves out is the default one."
                )
                # The parts a variant has, for the per-language editor (message_editor.js).
                self.fields["variants"].widget.attrs["data-parts"] = json.dumps(
                    [
                        {
                            "name": part.name,
                            "label": part.label or part.name,
                            "multiline": isinstance(self.fields[part.draft_column].widget, forms.Textarea),
                            "maxlength": TransactionalMessage._meta.get_field(part.draft_column).max_length,
                        }
                        for part in of_channel.parts
                    ]
                )
            if channel_of(self.instance.channel).short_links and "track_clicks" in self.fields:
                self.fields["track_clicks"].help_text = (
                    "Web links of the text become short signed links (about 25 characters after your "
                    "PUBLIC_URL) that record each click. Off unless switched on."
                )

    def clean(self):
        cleaned = super().clean()
        message = self.instance
        configuration = message.configuration
        of_channel = channel_of(configuration.channel)
        if "from_address" in cleaned and "reply_to" in cleaned:
            problems = senders.sender_problems(
                organization=configuration.organization,
                from_address=cleaned["from_address"],
                reply_to=cleaned["reply_to"],
                uses_default_sender=of_channel.uses_default_sender,
            )
            for key, field in (("from", "from_address"), ("replyTo", "reply_to")):
                if key in problems:
                    self.add_error(field, problems[key])
        if "from_name" in cleaned and "from_name" in self.fields:
            try:  # the channel's rule (an SMS sender's), the publication's own
                cleaned["from_name"] = of_channel.sender_name(cleaned["from_name"] or "")
            except ValueError as error:
                self.add_error("from_name", str(error))
        variants = cleaned.get("variants") or {}
        if not isinstance(variants, dict):
            self.add_error("variants", 'Variants are an object: {"fr": {"subject": ...}}.')
            variants = {}
        columns = {part.name: part.draft_column for part in of_channel.parts}
        # A part that failed its own field's checks has left cleaned_data: it is wrong, not empty.
        failed = {name for name, column in columns.items() if column in self.errors}
        content: dict = {
            name: cleaned.get(column) or "" for name, column in columns.items() if name not in failed
        }
        if variants:
            content["variants"] = variants
        for problem in services.part_length_problems(channel=configuration.channel, content=content):
            if problem.part.startswith("variants."):
                self.add_error("variants", str(problem))
        # The content's checks, the publication's own (messages.services.content_problems); a draft
        # may be incomplete, the message of a published event may not be emptied.
        must_be_complete = configuration.is_published and message.status != TransactionalMessage.Status.DRAFT
        for problem in services.content_problems(
            channel=configuration.channel,
            content=content,
            schema=services.configuration_schema(message),
            sample_context=services.sample_context(message),
            require_parts=must_be_complete,
        ):
            if problem.missing:
                if problem.part not in failed:
                    self.add_error(
                        columns[problem.part], "The message of a published event cannot be emptied."
                    )
                continue
            field = columns.get(problem.part, "variants")
            self.add_error(field if field in self.fields else None, str(problem))
        return cleaned


def user_name(user, *, nobody: str = "-") -> str:
    """Who did it, as text: a link to the user's page would be a 403 for a marketer."""
    return user.get_username() if user is not None else nobody


class VersionInline(admin.TabularInline):
    model = MessageVersion
    extra = 0
    can_delete = False
    fields = ("number", "publisher", "published_at")
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="Published by")
    def publisher(self, version: MessageVersion) -> str:
        return user_name(version.published_by, nobody="command line")

    def has_add_permission(self, request, obj=None):
        return False


class HistoryInline(admin.TabularInline):
    """Publish, pause, resume, unpublish and proofs, newest first, with who did them."""

    model = MessageStatusChange
    verbose_name_plural = "history"
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "from_status", "to_status", "version_number", "by", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="User")
    def by(self, change: MessageStatusChange) -> str:
        return user_name(change.user)


@admin.register(TransactionalMessage)
class TransactionalMessageAdmin(OrganizationScopedAdmin):
    organization_path = "configuration__organization"
    form = TransactionalMessageForm
    change_form_template = "admin/transactional/transactionalmessage/change_form.html"
    inlines = [VersionInline, HistoryInline]
    list_display = ["event_id", "event_label", "channel", "status", "live", "changes", "updated_at"]
    list_filter = ["status", "configuration__channel"]
    search_fields = ["configuration__name", "configuration__label", "subject", "title"]
    list_select_related = ["configuration", "live_version"]

    @admin.display(description="Event", ordering="configuration__name")
    def event_id(self, message: TransactionalMessage) -> str:
        return message.configuration.event_id

    @admin.display(description="Label", ordering="configuration__label")
    def event_label(self, message: TransactionalMessage) -> str:
        return message.configuration.label or "-"

    @admin.display(description="Channel")
    def channel(self, message: TransactionalMessage) -> str:
        return message.configuration.get_channel_display()

    @admin.display(description="Draft")
    def changes(self, message: TransactionalMessage) -> str:
        """Whether the draft differs from the live version, in words (an icon alone left it unclear)."""
        if message.live_version is None:
            return format_html('<span class="draft-mark draft-new">{}</span>', "Never published")
        if message.has_unpublished_changes:
            return format_html('<span class="draft-mark draft-changed">{}</span>', "Unpublished changes")
        return format_html('<span class="draft-mark">{}</span>', "Same as the live version")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["configuration"]
        of_channel = channel_of(obj.channel)
        columns = [part.draft_column for part in of_channel.parts]
        tracking_fields = []
        if of_channel.tracked_part:  # channels that track: email (opens, clicks), SMS (clicks, opt-in)
            tracking_fields = [
                "tracking",
                *(["track_opens"] if of_channel.tracks_opens else []),
                "track_clicks",
            ]
        # The preview right under the parts it follows as they are typed.
        return ["event", "status", "live", "event_fields", *columns, "preview", *sender_fields(of_channel),
                "variants", *tracking_fields]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return ["event", "status", "live", "event_fields", "tracking", "preview"]

    class Media:
        # The event's fields beside the editor insert themselves where the cursor is (a file: the
        # Content-Security-Policy allows no inline script).
        js = ["campaign/message_editor.js"]

    @admin.display(description="Event fields")
    def event_fields(self, message: TransactionalMessage) -> str:
        """The event's data, each a button that inserts it in the part being edited: a field as
        `{{ ctx.name }}`, a collection as a loop over its items."""
        schema = services.configuration_schema(message)
        joined = services.joined_columns(schema)  # the rows of custom resources joined to items
        collections = []
        for collection in schema.get("collections", []):
            names = [field["name"] for field in collection.get("fields", [])]
            names += joined.get(collection["name"], [])
            loop = "{% for item in ctx." + collection["name"] + " %}\n"
            loop += " ".join("{{ item." + name + " }}" for name in names) + "\n{% endfor %}"
            collections.append({"name": collection["name"], "fields": names, "loop": loop})
        return render_to_string(
            f"{FIELD_TEMPLATES}/event_fields.html",
            {
                "fields": [
                    {"name": f["name"], "type": f["type"], "insert": "{{ ctx." + f["name"] + " }}"}
                    for f in schema.get("fields", [])
                ],
                "collections": collections,
                "targets": " ".join(part.draft_column for part in channel_of(message.channel).parts),
            },
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        message = self.get_object(request, object_id) if object_id else None
        if message is not None and request.method == "GET":
            extra_context["variant_warning"] = self._variant_warning(message, message.variants)
        return super().changeform_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _variant_warning(message: TransactionalMessage, variants) -> str:
        never = services.variants_never_chosen(message=message, variants=variants)
        if not never:
            return ""
        return (
            f"The variant{'s' if len(never) > 1 else ''} {', '.join(never)} can never be chosen: "
            f"{message.configuration.event_id} is a real-time event without an AC_language field, "
            "so every event gets the default content. Add an AC_language field to the event type "
            "(an administrator), or remove the variants."
        )

    @admin.display(description="Live version", ordering="live_version__number")
    def live(self, message: TransactionalMessage) -> str:
        """The version events are sent with: none once the message is unpublished."""
        version = message.published_version
        if version is not None:
            return f"v{version.number}" + (
                " (paused: kept, not sent)" if message.status == TransactionalMessage.Status.PAUSED else ""
            )
        if message.live_version is not None:
            return f"None: unpublished (v{message.live_version.number} was live)"
        return "None: never published"

    @admin.display(description="Tracking")
    def tracking(self, message: TransactionalMessage) -> str:
        """Whether opens and clicks can be tracked at all: their links need PUBLIC_URL."""
        return render_to_string(
            f"{FIELD_TEMPLATES}/tracking.html",
            {"enabled": tracking.enabled(), "public_url": settings.PUBLIC_URL.strip().rstrip("/")},
        )

    @admin.display(description="Event")
    def event(self, message: TransactionalMessage) -> str:
        return render_to_string(f"{FIELD_TEMPLATES}/event.html", {"configuration": message.configuration})

    @admin.display(description="Preview (sample data)")
    def preview(self, message: TransactionalMessage) -> str:
        """The saved draft rendered with the sample data, in a panel that follows the unsaved edits
        (message_editor.js asks the live preview view as the marketer types), with a desktop and
        mobile width, the language variant to show, and the sample data to render with."""
        of_channel = channel_of(message.configuration.channel)
        context: dict[str, object] = {
            "live_url": reverse("admin:transactional_transactionalmessage_live_preview", args=[message.pk]),
            "sample_data": json.dumps(services.sample_data(message), indent=2, default=str),
            "languages": sorted(message.variants or {}),
            "parts": " ".join(f"{part.name}:{part.draft_column}" for part in of_channel.parts),
        }
        # The variant the saved draft is shown in: the one an event with the sample data would get.
        language = services.event_language(
            profile=services.sample_profile(message), ctx=services.sample_data(message)
        )
        context["variant"] = chosen_variant(message.draft_content(), language)
        try:
            rendered = services.preview_message(message=message)
        except Exception as error:  # show the marketer what is wrong instead of a broken page
            context["error"] = error
        else:
            # The channel's own preview template, as on the preview page.
            context["saved"] = render_to_string(
                of_channel.preview_template, {"rendered": rendered, **of_channel.preview_context(rendered)}
            )
        return render_to_string(f"{FIELD_TEMPLATES}/live_preview.html", context)

    def get_urls(self):
        def wrap(view):
            def wrapped(request, *args, **kwargs):
                return view(self, request, *args, **kwargs)

            return self.admin_site.admin_view(wrapped)

        return [
            path(
                "<path:object_id>/preview/",
                wrap(admin_views.preview_view),
                name="transactional_transactionalmessage_preview",
            ),
            path(
                "<path:object_id>/live-preview/",
                wrap(admin_views.live_preview_view),
                name="transactional_transactionalmessage_live_preview",
            ),
            path(
                "<path:object_id>/proof/",
                wrap(admin_views.proof_view),
                name="transactional_transactionalmessage_proof",
            ),
            path(
                "<path:object_id>/versions/",
                wrap(admin_views.diff_view),
                name="transactional_transactionalmessage_versions",
            ),
            path(
                "<path:object_id>/try/",
                wrap(admin_views.try_view),
                name="transactional_transactionalmessage_try",
            ),
            path(
                "<path:object_id>/try/<int:try_id>/status/",
                wrap(admin_views.try_status_view),
                name="transactional_transactionalmessage_try_status",
            ),
            path(
                "<path:object_id>/pause/",
                wrap(admin_views.pause_view),
                name="transactional_transactionalmessage_pause",
            ),
            path(
                "<path:object_id>/unpublish/",
                wrap(admin_views.unpublish_view),
                name="transactional_transactionalmessage_unpublish",
            ),
            path(
                "<path:object_id>/versions/<int:number>/republish/",
                wrap(admin_views.republish_view),
                name="transactional_transactionalmessage_republish",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change):
        if change:
            services.save_draft(message=obj)  # never write back the status or the live version
            warning = self._variant_warning(obj, obj.variants)
            if warning:
                self.message_user(request, warning, flash.WARNING)
        else:
            super().save_model(request, obj, form, change)

    def has_add_permission(self, request):
        return False  # a message is created by publishing its event

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != TransactionalMessage.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        """What deleting messages takes along, counted rather than listed (a message may have sent
        millions): versions, history, deliveries, opens and clicks. They have no life of their own
        (nobody deletes them one by one, so their permission is not asked for); the rule is that
        only a draft is deleted, and a selection with another is refused, naming it."""
        messages = list(objs)
        refused = [
            f"{message} is {message.get_status_display().lower()}: unpublish it first"
            for message in messages
            if message.status != TransactionalMessage.Status.DRAFT
        ]
        ids = [message.pk for message in messages]
        counts = {
            TransactionalMessage._meta.verbose_name_plural: len(messages),
            MessageVersion._meta.verbose_name_plural: MessageVersion.objects.filter(message_id__in=ids),
            "history entries": MessageStatusChange.objects.filter(message_id__in=ids),
            Delivery._meta.verbose_name_plural: Delivery.objects.filter(message_id__in=ids),
            "opens and clicks": TrackingHit.objects.filter(message_id__in=ids),
        }
        model_count = {
            str(name): rows if isinstance(rows, int) else rows.count() for name, rows in counts.items()
        }
        summary = [str(message) for message in messages]
        return summary, {name: n for name, n in model_count.items() if n}, set(), refused

    def delete_model(self, request, obj):
        lifecycle.delete(obj)

    def delete_queryset(self, request, queryset):
        for message in queryset.filter(status=TransactionalMessage.Status.DRAFT):
            lifecycle.delete(message)

    def response_change(self, request, obj):
        # Publish and Resume send the form's edits along; Pause and Unpublish are links to pages
        # that ask first (admin_views).
        for button, action, done in (
            ("_publish", lambda: event_side().publish(message=obj, user=request.user), "published"),
            ("_resume", lambda: event_side().resume(message=obj, user=request.user), "resumed"),
        ):
            if button in request.POST:
                try:
                    action()
                except PublicationError as error:
                    self.message_user(
                        request, "Your changes are saved in the draft, not published.", flash.WARNING
                    )
                    for line in error.errors:
                        self.message_user(request, line, flash.ERROR)
                else:
                    self.message_user(
                        request, f"The message of {obj.configuration.event_id} is {done}.", flash.SUCCESS
                    )
                return HttpResponseRedirect(
                    reverse("admin:transactional_transactionalmessage_change", args=[obj.pk])
                )
        return super().response_change(request, obj)


@admin.register(MessageVersion)
class MessageVersionAdmin(OrganizationScopedAdmin):
    organization_path = "message__configuration__organization"
    list_display = ["message", "number", "publisher", "published_at"]
    readonly_fields = ["message", "number", "content", "publisher", "published_at"]

    @admin.display(description="Published by")
    def publisher(self, version: MessageVersion) -> str:
        return user_name(version.published_by, nobody="command line")

    def has_module_permission(self, request):
        return False  # reached from its message

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


_OPEN_PIXEL = re.compile(r"""<img\s[^>]*?src="[^"]*/t/o/[A-Za-z0-9_.:-]+\.gif"[^>]*>""")
_CLICK_LINK = re.compile(r"""(href=")([^"]*/t/c/([A-Za-z0-9_.:-]+))(")""")


def without_tracking(html: str, delivery: Delivery) -> str:
    """The HTML as sent, minus what would record an open or a click when the staff looks at it: the
    pixel goes, each tracked link points to its destination again."""
    if not delivery.tracking_id:
        return html
    destinations = {
        tracking.click_token(delivery.tracking_id, index): url
        for index, url in enumerate(delivery.tracked_links or [])
    }

    def link(match: re.Match[str]) -> str:
        url = destinations.get(match.group(3))
        return f"{match.group(1)}{escape(url)}{match.group(4)}" if url is not None else match.group(0)

    return _CLICK_LINK.sub(link, _OPEN_PIXEL.sub("", html))


class MessageFilter(admin.SimpleListFilter):
    """The caller's organization's messages (not a scan of the deliveries for their messages)."""

    title = "message"
    parameter_name = "message"

    def lookups(self, request, model_admin):
        messages = TransactionalMessage.objects.select_related("configuration")
        messages = messages.order_by("configuration__name")
        organization = organization_of(request)
        if organization is not None:
            messages = messages.filter(configuration__organization=organization)
        return [(str(m.pk), str(m)) for m in messages]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(message_id=value) if value and value.isdigit() else queryset


class VersionFilter(admin.SimpleListFilter):
    """The versions of the chosen message (shown once a message is chosen)."""

    title = "version"
    parameter_name = "version"

    def lookups(self, request, model_admin):
        message = request.GET.get(MessageFilter.parameter_name, "")
        if not message.isdigit():
            return []
        versions = MessageVersion.objects.filter(message_id=message).order_by("-number")
        organization = organization_of(request)
        if organization is not None:
            versions = versions.filter(message__configuration__organization=organization)
        return [(str(v.pk), f"v{v.number}") for v in versions]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(version_id=value) if value and value.isdigit() else queryset


@admin.register(Delivery)
class DeliveryAdmin(CsvExportMixin, OrganizationScopedAdmin):
    """The execution list: every send (and proof), what was sent and what the provider answered."""

    list_display = [
        "created_at", "message_event", "version_number", "channel", "recipient", "outcome", "is_proof",
        "event", "duration_ms",
    ]  # fmt: skip
    list_filter = [MessageFilter, VersionFilter, "channel", "outcome", PeriodFilter, "is_proof"]
    # The event of a delivery is linked from the events app (`event_link`); proofs have none.
    search_fields = ["recipient", "event_link__event__pkey", "provider_message_id"]
    date_hierarchy = "created_at"
    list_select_related = ["event_link__event", "message__configuration", "version"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["created_at", "message", "version", "event", "channel", "recipient", "is_proof"]}),
        (
            "Provider's answer",
            {
                "fields": [
                    "outcome",
                    "provider",
                    "provider_message_id",
                    "provider_response",
                    "duration_ms",
                    "attempts",
                ]
            },
        ),
        ("What the provider said later", {"fields": ["provider_history_list"]}),
        ("What was sent", {"fields": ["sent_content"]}),
    ]
    change_list_template = CSV_EXPORT_CHANGE_LIST
    export_name = "deliveries"
    export_columns = [
        ("created_at", "created_at"),
        ("event_id", "message__configuration__name"),
        ("version", "version__number"),
        ("PKey", "event_link__event__pkey"),
        ("channel", "channel"),
        ("recipient", "recipient"),
        ("outcome", "outcome"),
        ("is_proof", "is_proof"),
        ("provider_message_id", "provider_message_id"),
        ("provider_response", "provider_response"),
        ("duration_ms", "duration_ms"),
    ]

    def get_queryset(self, request):
        # Lists and exports never read the stored content (up to a few MB a row); a delivery's page
        # reads it when it shows it.
        return super().get_queryset(request).defer("content")

    def get_readonly_fields(self, request, obj=None):
        return [
            *(f.name for f in Delivery._meta.fields),
            "event",
            "sent_content",
            "provider_history_list",
        ]

    @admin.display(description="Provider reports")
    def provider_history_list(self, delivery: Delivery) -> str:
        """What the provider said after the send, oldest first (messages.provider_history): an email
        provider's webhooks (bounces, complaints...) and an SMS provider's delivery receipts."""
        history = provider_history([delivery], limit=50)
        if not history.reports:
            return "None (a bounce, a complaint or a delivery receipt the provider reports later shows here)"
        return format_html_join(
            "",
            "<p class='provider-event'><strong>{}</strong> {} ({}){}: {}</p>",
            (
                (
                    report.kind_label,
                    f"{timezone.localtime(report.occurred_at or report.received_at):%Y-%m-%d %H:%M:%S}",
                    report.provider,
                    ", address quarantined" if report.quarantined else "",
                    report.description or "-",
                )
                for report in history.reports
            ),
        )

    @admin.display(description="Event")
    def event(self, delivery: Delivery) -> object:
        link = getattr(delivery, "event_link", None)
        return link.event if link is not None else "-"

    @admin.display(description="Message", ordering="message__configuration__name")
    def message_event(self, delivery: Delivery) -> str:
        """The message by its event's id (the list's narrow column; "Message of" said on every row)."""
        return delivery.message.configuration.event_id

    @admin.display(description="Version", ordering="version__number")
    def version_number(self, delivery: Delivery) -> str:
        return f"v{delivery.version.number}" if delivery.version else "-"

    @admin.display(description="Content")
    def sent_content(self, delivery: Delivery) -> str:
        """The parts as they were sent; HTML in a sandboxed frame (no script, no same origin)."""
        content = delivery.content or {}
        parts = [(name, value) for name, value in content.items() if name not in ("html", "from")]
        html = content.get("html")
        return render_to_string(
            "admin/transactional/delivery/content.html",
            {
                "sender": content.get("from", ""),
                "parts": parts,
                "html": without_tracking(html, delivery) if html is not None else None,
            },
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


from messages import admin_providers  # noqa: E402, F401  - registers the organizations' providers
