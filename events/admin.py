"""Admin pages of event types (administrators) and of events (read-only, for everyone)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib import messages as flash
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum, TextField, Value
from django.db.models.functions import Coalesce, Concat, NullIf
from django.http import Http404, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from campaign import bounds
from campaign.admin import (
    CSV_EXPORT_CHANGE_LIST,
    CsvExportMixin,
    OrganizationScopedAdmin,
    PeriodFilter,
    ProfileAdmin,
    organization_of,
)
from campaign.models import CustomResource, Profile
from events import publication, rollups, services, typology
from events.admin_reports import install_dashboard
from events.enrichment import MAX_ENRICHMENTS
from events.models import (
    ConfigurationStatusChange,
    Enrichment,
    Event,
    EventConfiguration,
    EventField,
    EventStatusChange,
    FatigueRule,
    FieldType,
    FilterCondition,
    HourlyRollup,
    ProfileSample,
    Typology,
    TypologyRule,
    format_event_id,
)
from events.person import forget_person
from events.schema import (
    SchemaError,
    build_schema,
    check_value,
    format_datetime,
    sample_body,
    sample_ctx,
)
from events.selectors import search_ctx, with_last_reason
from events.timeline import event_timeline
from messages.admin import TransactionalMessageAdmin
from messages.channels import channel
from messages.lifecycle import PublicationError
from messages.models import Delivery, MessageVersion, TransactionalMessage


class AllowedValuesField(forms.Field):
    """An event field's allowed values as one types a list: `gold, silver` (empty: any value). A
    JSON list is taken too, for values that hold a comma."""

    def to_python(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        text = (value or "").strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise forms.ValidationError(
                    'Not a list: write the values separated by commas, or a JSON list ["a", "b"].'
                ) from None
            if not isinstance(parsed, list):
                raise forms.ValidationError("Not a list.")
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]

    def prepare_value(self, value: Any) -> str:
        if not isinstance(value, list):
            return value or ""
        if any(isinstance(item, str) and ("," in item or item != item.strip()) for item in value):
            return json.dumps(value, ensure_ascii=False)
        return ", ".join(json.dumps(item) if isinstance(item, bool) else str(item) for item in value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.prepare_value(self.to_python(initial)) != self.prepare_value(self.to_python(data))
        except forms.ValidationError:
            return True


def typed_allowed_values(values: list[Any], *, name: str, kind: str, max_length: int | None) -> list[Any]:
    """The typed values, as the API compares them (numbers, booleans), each checked against the
    field's own type as the configuration file's import checks them; ValidationError names the first
    that does not fit."""
    typed = []
    for value in values:
        if isinstance(value, str) and kind in (FieldType.INTEGER, FieldType.DECIMAL, FieldType.BOOLEAN):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # check_value says what is wrong with the text
        try:
            if value is None:
                raise SchemaError("values", "null is not an allowed value")
            check_value({"name": name, "type": kind, "maxLength": max_length}, value, "values")
        except SchemaError as error:
            raise forms.ValidationError(f"{value!r} {error.message}.") from None
        typed.append(value)
    return typed


FIELD_COLUMNS: tuple[str, ...] = (
    "collection",
    "name",
    "label",
    "type",
    "required",
    "max_length",
    "values",
    "sensitive",
    "position",
)


class EventFieldForm(forms.ModelForm):
    values = AllowedValuesField(
        required=False,
        label="Allowed values",
        help_text="Separated by commas, e.g. gold, silver (empty: any value).",
        widget=forms.TextInput(attrs={"style": "width: 9em", "placeholder": "any value"}),
    )

    class Meta:
        model = EventField
        fields = FIELD_COLUMNS
        # One line per field: the admin's defaults (20em inputs) make each row tall and push the
        # last columns off the page.
        widgets = {
            "collection": forms.TextInput(attrs={"style": "width: 6em"}),
            "name": forms.TextInput(attrs={"style": "width: 8em"}),
            "label": forms.TextInput(attrs={"style": "width: 8em"}),
            "type": forms.Select(attrs={"style": "width: 7em"}),
            "max_length": forms.NumberInput(attrs={"style": "width: 4em"}),
            "position": forms.NumberInput(attrs={"style": "width: 3.5em", "placeholder": "next"}),
        }
        help_texts = {"position": "The order of the fields; empty: after the last one."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["position"].required = False
        if self.instance.pk is None:
            self.fields["position"].initial = None  # empty: the next free position (the formset's)

    def clean(self):
        cleaned = super().clean()
        values = cleaned.get("values") or []
        if values and cleaned.get("type") and "values" not in self.errors:
            try:
                cleaned["values"] = typed_allowed_values(
                    values,
                    name=cleaned.get("name") or "",
                    kind=cleaned["type"],
                    max_length=cleaned.get("max_length"),
                )
            except forms.ValidationError as error:
                self.add_error("values", error)
        return cleaned


class EventFieldFormSet(forms.BaseInlineFormSet):
    """Two fields of one name are said once, on the second one's row (Django also says it above
    the table, in other words)."""

    def get_form_error(self) -> str:
        return "A field above (in the same collection) has this name already: each field needs its own."

    def clean(self) -> None:
        """A new field without a position goes after the last one (the next free position)."""
        super().clean()
        kept = [
            form
            for form in self.forms
            if hasattr(form, "cleaned_data") and form.has_changed() or getattr(form.instance, "pk", None)
        ]
        kept = [form for form in kept if not form.cleaned_data.get("DELETE")]
        taken = [
            form.cleaned_data["position"] for form in kept if form.cleaned_data.get("position") is not None
        ]
        next_free = max(taken, default=-1) + 1
        for form in kept:
            if "position" in form.cleaned_data and form.cleaned_data["position"] is None:
                form.cleaned_data["position"] = next_free
                form.instance.position = next_free
                next_free += 1

    def validate_unique(self) -> None:
        try:
            super().validate_unique()
        except forms.ValidationError:
            pass  # each duplicate row carries get_form_error(), which keeps the formset invalid


class EventFieldInline(admin.TabularInline):
    model = EventField
    form = EventFieldForm
    formset = EventFieldFormSet
    extra = 1
    fields = FIELD_COLUMNS


class EnrichmentForm(forms.ModelForm):
    class Meta:
        model = Enrichment
        fields = ["kind", "event_field", "profile_field", "collection", "resource", "name", "required"]
        widgets = {
            "event_field": forms.TextInput(attrs={"style": "width: 8em"}),
            "profile_field": forms.TextInput(attrs={"style": "width: 8em"}),
            "collection": forms.TextInput(attrs={"style": "width: 7em"}),
            "name": forms.TextInput(attrs={"style": "width: 7em"}),
        }

    def clean(self):
        """What each kind needs; how the join fits the event's fields is the publication's rule
        (events.services.enrichment_errors), checked when the event is published."""
        cleaned = super().clean()
        if cleaned.get("DELETE"):
            return cleaned
        kind = cleaned.get("kind")
        if kind == Enrichment.Kind.PROFILE:
            if not cleaned.get("profile_field"):
                self.add_error("profile_field", "A profile enrichment names the profile field it matches.")
            for name in ("collection", "resource", "name"):
                if cleaned.get(name):
                    self.add_error(name, "Only for a custom resource enrichment.")
        elif kind == Enrichment.Kind.RESOURCE:
            if not cleaned.get("collection"):
                self.add_error("collection", "A resource enrichment joins the items of a collection.")
            if not cleaned.get("resource"):
                self.add_error("resource", "Choose the custom resource (import it with import_resource).")
            if cleaned.get("profile_field"):
                self.add_error("profile_field", "Only for a profile enrichment.")
        return cleaned


class EnrichmentInline(admin.TabularInline):
    """Joins that enrich the event's message (events.enrichment), with the organization's resources."""

    model = Enrichment
    form = EnrichmentForm
    extra = 0
    max_num = MAX_ENRICHMENTS
    validate_max = True
    fields = ["kind", "event_field", "profile_field", "collection", "resource", "name", "required"]
    verbose_name_plural = "enrichments (profile fields, custom resources: taken into account when published)"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        organization = organization_of(request) or (obj.organization if obj else None)
        resources = formset.form.base_fields["resource"]
        resources.queryset = (  # type: ignore[attr-defined]
            CustomResource.objects.filter(organization=organization)
            if organization is not None
            else CustomResource.objects.none()
        )
        return formset


class ConfigurationHistoryInline(admin.TabularInline):
    """Publications and unpublications of the event type, newest first, with who did them."""

    model = ConfigurationStatusChange
    verbose_name_plural = "history"
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "from_status", "to_status", "user", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class EventConfigurationForm(forms.ModelForm):
    class Meta:
        model = EventConfiguration
        fields = [
            "organization",
            "name",
            "label",
            "channel",
            "targeting",
            "reconciliation_event_field",
            "reconciliation_profile_field",
            "typology",
        ]

    def __init__(self, *args, organization=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        if "name" in self.fields:
            # EVT + name <= 64: the form accepts a typed prefix and strips it in clean_name.
            self.fields["name"].max_length = None
            self.fields["name"].validators = []

    def clean_name(self) -> str:
        name = services.normalise_event_name(self.cleaned_data.get("name", ""))
        self.instance.name = name
        organization = (
            self.organization
            or self.cleaned_data.get("organization")
            or getattr(self.instance, "organization", None)
        )
        errors = services.event_name_errors(name)
        if errors:
            raise forms.ValidationError(errors)
        if organization is not None:
            taken = EventConfiguration.objects.filter(organization=organization, name=name)
            if taken.exclude(pk=self.instance.pk).exists():
                raise forms.ValidationError(
                    f"The event {format_event_id(name)} already exists in this organization."
                )
        return name

    def clean_typology(self) -> Typology | None:
        typology = self.cleaned_data.get("typology")
        organization = (
            self.organization
            or self.cleaned_data.get("organization")
            or getattr(self.instance, "organization", None)
        )
        if typology is not None and organization is not None and typology.organization_id != organization.pk:
            raise forms.ValidationError("Pick a typology of this event type's organization.")
        return typology


class ProfileSampleForm(forms.ModelForm):
    """The sample data as JSON text, checked with the API's own rules (events.services)."""

    ctx = forms.CharField(
        label="Sample data (ctx, JSON)",
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80}),
        help_text="The event's data as the API takes it in ctx. Previews and proofs for this test "
        "profile render with it and with the profile's fields.",
    )

    class Meta:
        model = ProfileSample
        fields = ["profile", "configuration", "ctx"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["ctx"] = json.dumps(self.instance.ctx, indent=2)

    def clean_ctx(self) -> Any:
        raw = self.cleaned_data["ctx"]
        if len(raw) > settings.API_MAX_BODY_BYTES:
            raise forms.ValidationError(
                f"At most {settings.API_MAX_BODY_BYTES} characters (the API's limit)."
            )
        try:
            value = bounds.load_json(raw)
        except bounds.JsonSyntaxError as error:
            raise forms.ValidationError(str(error)) from None
        return value

    def clean(self):
        cleaned = super().clean()
        profile, configuration = cleaned.get("profile"), cleaned.get("configuration")
        if profile is None or configuration is None or "ctx" not in cleaned:
            return cleaned
        try:
            cleaned["ctx"] = services.checked_profile_sample(
                profile=profile, configuration=configuration, ctx=cleaned["ctx"]
            )
        except SchemaError as error:
            place = error.field if error.field in ("profile",) else "ctx"
            self.add_error(place, f"{error.field}: {error.message}")
        return cleaned


@admin.register(ProfileSample)
class ProfileSampleAdmin(OrganizationScopedAdmin):
    """Administrators give test profiles sample event data, per event type."""

    organization_path = "configuration__organization"
    form = ProfileSampleForm
    list_display = ["profile", "configuration", "updated_at"]
    list_select_related = ["profile", "configuration"]
    search_fields = ["profile__email", "configuration__name"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "profile" and field is not None:
            field.queryset = field.queryset.filter(is_test=True)  # type: ignore[attr-defined]
        return field

    def get_changeform_initial_data(self, request):
        """A new sample starts from the generated sample data of the event type in the address."""
        initial = super().get_changeform_initial_data(request)
        chosen = str(request.GET.get("configuration") or "")
        organization = organization_of(request)
        if chosen.isdigit():
            found = EventConfiguration.objects.filter(pk=int(chosen))
            if organization is not None:
                found = found.filter(organization=organization)
            configuration = found.first()
            if configuration is not None:
                schema = configuration.published_schema or build_schema(configuration)
                initial["ctx"] = json.dumps(sample_ctx(schema), indent=2)
        return initial


@admin.register(EventConfiguration)
class EventConfigurationAdmin(OrganizationScopedAdmin):
    form = EventConfigurationForm
    change_form_template = "admin/events/eventconfiguration/change_form.html"
    inlines = [EventFieldInline, EnrichmentInline, ConfigurationHistoryInline]
    list_display = ["event_id", "label", "channel", "targeting", "status", "published_at"]
    list_filter = ["status", "channel", "targeting"]
    search_fields = ["name", "label"]
    actions = ["duplicate"]

    class Media:
        # The reconciliation shown only for profile targeting; the API preview's copy button.
        js = ["campaign/configuration_form.js"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        organization = organization_of(request) or (obj.organization if obj else None)

        class ScopedForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, organization=organization, **inner)

        return ScopedForm

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only what the page edits: the status, the frozen schema and the message belong to the
        # publication workflows, and this copy, read when the request began, must not write them back.
        columns = {field.name for field in obj._meta.concrete_fields}
        obj.save(update_fields=[name for name in form.fields if name in columns] + ["updated_at"])

    def get_fieldsets(self, request, obj=None):
        identity = ["name", "label", "channel", "targeting"]
        if request.user.is_superuser:
            identity.insert(0, "organization")
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [(None, {"fields": identity})]
        # Only for profile targeting: on a new event type, shown while "Profile" is chosen
        # (static/campaign/configuration_form.js); on an existing one, whose targeting is fixed,
        # only if it targets profiles.
        if obj is None or obj.targeting == "profile":
            fieldsets.append(
                (
                    "Reconciliation (profile targeting)",
                    {
                        "fields": ["reconciliation_event_field", "reconciliation_profile_field", "typology"],
                        "description": "Which event field (in ctx) identifies the profile, "
                        "and which profile field it matches; the typology rules its messages pass.",
                        "classes": ["reconciliation"],
                    },
                )
            )
        if obj is not None:
            fieldsets.append(
                ("Publication", {"fields": ["status", "published_at", "endpoint", "api_preview"]})
            )
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["status", "published_at", "endpoint", "api_preview"]
        if obj is not None:  # channel and targeting are chosen at creation and cannot change
            readonly += ["channel", "targeting"] + (["organization"] if request.user.is_superuser else [])
        if obj is not None and obj.is_published:
            # The endpoint is found by name: renaming would move it before any republish.
            readonly.append("name")
        return readonly

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_published:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        """What deleting event types takes along, counted rather than listed: fields, history, the
        message with its versions and deliveries. Refused, naming why, for a published one and for
        one whose events are still kept (the retention purge removes them; they keep the history)."""
        configurations = list(objs)
        ids = [configuration.pk for configuration in configurations]
        events = dict(
            Event.objects.filter(configuration_id__in=ids)
            .values_list("configuration_id")
            .annotate(n=Count("id"))
            .values_list("configuration_id", "n")
        )
        refused = [
            f"{configuration.event_id} is published: unpublish it first"
            for configuration in configurations
            if configuration.is_published
        ] + [
            f"{configuration.event_id} still has {events[configuration.pk]} event(s), kept for their "
            "history until the retention purge removes them"
            for configuration in configurations
            if events.get(configuration.pk)
        ]
        message_ids = [c.message_id for c in configurations if c.message_id]
        counts = {
            "event types": len(configurations),
            "fields": EventField.objects.filter(configuration_id__in=ids).count(),
            "history entries": ConfigurationStatusChange.objects.filter(configuration_id__in=ids).count(),
            "transactional messages": len(message_ids),
            "message versions": MessageVersion.objects.filter(message_id__in=message_ids).count(),
            "deliveries (proofs included)": Delivery.objects.filter(message_id__in=message_ids).count(),
        }
        summary = [configuration.event_id for configuration in configurations]
        return summary, {name: n for name, n in counts.items() if n}, set(), refused

    def delete_queryset(self, request, queryset):
        published = queryset.filter(status=EventConfiguration.Status.PUBLISHED)
        if published.exists():
            self.message_user(
                request, "Published event types cannot be deleted: unpublish them first.", flash.ERROR
            )
            queryset = queryset.exclude(pk__in=published)
        super().delete_queryset(request, queryset)

    @admin.display(description="Endpoint")
    def endpoint(self, obj: EventConfiguration) -> str:
        if not obj.is_published:
            return "Not deployed: publish the event to make its endpoint answer."
        return render_to_string(
            "admin/events/eventconfiguration/endpoint.html",
            {"url": self._base_url(obj) + obj.endpoint_path()},
        )

    @admin.display(description="API preview")
    def api_preview(self, obj: EventConfiguration) -> str:
        if not obj.is_published:
            return "Shown once the event is published."
        schema: dict[str, Any] = obj.published_schema or {}
        fields = [
            {"name": f["name"], "type": f["type"], "required": f.get("required")} for f in schema["fields"]
        ] + [
            {"name": f"{collection['name']}[].{f['name']}", "type": f["type"], "required": f.get("required")}
            for collection in schema.get("collections", [])
            for f in collection["fields"]
        ]
        return render_to_string(
            "admin/events/eventconfiguration/api_preview.html",
            {
                "published_at": format_datetime(obj.published_at),
                "url": self._base_url(obj) + obj.endpoint_path(),
                "body": json.dumps(sample_body(schema), indent=2),
                "fields": fields,
                "base_url": self._base_url(obj),
                # Swagger UI opens on this event's operation (its deep link: tag, operation id).
                "swagger_url": f"{reverse('swagger-ui')}#/{obj.event_id}/send_{obj.event_id}",
            },
        )

    @staticmethod
    def _base_url(obj: EventConfiguration) -> str:
        return settings.PUBLIC_URL.rstrip("/") or getattr(obj, "request_base_url", "")

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # On the object, not on this admin: one admin instance serves every request and thread.
            obj.request_base_url = request.build_absolute_uri("/").rstrip("/")
        return obj

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if object_id:
            obj = self.get_object(request, object_id)
            if obj is not None:
                message = obj.message
                extra_context.update(
                    is_published=obj.is_published,
                    has_unpublished_changes=obj.is_published and obj.published_schema != build_schema(obj),
                    message_url=reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
                    if message
                    else "",
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/unpublish/",
                self.admin_site.admin_view(self.unpublish_view),
                name="events_eventconfiguration_unpublish",
            ),
            *super().get_urls(),
        ]

    def unpublish_view(self, request, object_id):
        """Unpublish asks first, on its own page, saying what goes down and which events fail."""
        configuration = self.get_object(request, object_id)
        if configuration is None:
            raise Http404("No such event type.")
        if not self.has_change_permission(request, configuration):
            raise PermissionDenied
        if request.method == "POST" and configuration.is_published:
            return self._run(
                request,
                configuration,
                publication.unpublish_configuration,
                "unpublished: its endpoint is down",
            )
        change_url = reverse("admin:events_eventconfiguration_change", args=[configuration.pk])
        return TemplateResponse(
            request,
            "admin/events/eventconfiguration/unpublish_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": configuration,
                "configuration": configuration,
                "title": f"Unpublish {configuration.event_id}?",
                "step": "Unpublish",
                "change_url": change_url,
                "effects": publication.unpublish_effects(configuration),
            },
        )

    def response_change(self, request, obj):
        if "_publish" in request.POST:
            return self._publish(request, obj)
        return super().response_change(request, obj)

    def response_add(self, request, obj, post_url_continue=None):
        if "_publish" in request.POST:
            return self._publish(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def _publish(self, request, obj):
        """After the page's changes are saved: publish, or say that they are saved but not live."""
        if obj.is_published:
            kept = (
                f"Your changes to {obj.event_id} are saved but not published: the API still "
                "enforces the published fields until a publication succeeds."
            )
        else:
            kept = f"{obj.event_id} is saved as a draft, not published: its endpoint does not answer."
        return self._run(
            request, obj, publication.publish_configuration, "published: its endpoint answers", refused=kept
        )

    def _run(self, request, obj, action, done: str, refused: str = ""):
        try:
            action(configuration=obj, user=request.user)
        except PublicationError as error:
            if refused:
                self.message_user(request, refused, flash.WARNING)
            for line in error.errors:
                self.message_user(request, line, flash.ERROR)
        else:
            self.message_user(request, f"{obj.event_id} {done}.", flash.SUCCESS)
        return HttpResponseRedirect(reverse("admin:events_eventconfiguration_change", args=[obj.pk]))

    @admin.action(description="Duplicate (as drafts, with the message)")
    def duplicate(self, request, queryset):
        for configuration in queryset:
            copy = services.duplicate_configuration(configuration=configuration)
            self.message_user(request, f"{configuration.event_id} duplicated as {copy.event_id}.")


def timeline_rows(steps: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The timeline's steps as the event's page shows them: when, what, and its details in words."""
    return [{"at": step["at"], "step": STEP_LABELS.get(step["step"], step["step"]), "detail": _detail(step)}
            for step in steps]  # fmt: skip


STEP_LABELS = {
    "received": "Received",
    "statusChanged": "Status",
    "routed": "Routed",
    "delivery": "Delivery",
    "attempt": "Attempt",
    "opened": "Opened",
    "clicked": "Clicked",
    "providerEvent": "Provider",
}


def _detail(step: dict[str, Any]) -> str:
    kind = step["step"]
    parts: list[str] = []
    if kind == "statusChanged":
        parts.append(f"{step['from'] or '-'} → {step['to']}")
        parts.append(f"code {step['code'] or '-'}")
        if step.get("worker"):
            parts.append(f"worker {step['worker']}")
    elif kind == "routed":
        parts.append(f"to version {step['version']}")
    elif kind == "delivery":
        parts.append(step["outcome"])
        if step["messageId"]:
            parts.append(f"Message-ID {step['messageId']}")
        parts.append(f"{step['durationMs']} ms")
        if step["providerResponse"]:
            parts.append(f"provider: {step['providerResponse'][:300]}")
    elif kind == "attempt":
        parts.append(f"by {step['worker'] or 'an unknown worker'}")
        parts.append(f"{step['durationMs']} ms")
        parts.append(f"code {step['code'] or '-'}")
    elif kind in ("opened", "clicked"):
        if kind == "clicked" and step.get("link") is not None:
            parts.append(f"link #{step['link']}")
        parts.append("first" if step["first"] else "again")
        if step["automated"]:
            parts.append("automated (scanner or prefetch)")
    elif kind == "providerEvent":
        parts.append(f"{step['kind']} ({step['provider']})")
        if step["description"]:
            parts.append(step["description"][:300])
        if step["quarantined"]:
            parts.append("address quarantined")
    if "attempt" in step and kind != "attempt":
        parts.append(f"attempt {step['attempt']}")
    elif kind == "attempt":
        parts.insert(0, f"#{step['attempt']}")
    return " · ".join(parts)


class StatusChangeInline(admin.TabularInline):
    model = EventStatusChange
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "code", "reason")
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        # The history is part of the event: whoever may read the event reads it (no role has a
        # permission on the history model itself).
        return request.user.has_perm("events.view_event")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(CsvExportMixin, OrganizationScopedAdmin):
    """The latest events: status and reason, filters, a search in ctx (`ctx:` prefix), CSV export."""

    list_display = [
        "pkey", "event_type", "status", "reason", "recipient", "scheduled_at", "attempts", "created_at",
    ]  # fmt: skip
    list_filter = ["status", ("configuration", admin.RelatedOnlyFieldListFilter), PeriodFilter]
    date_hierarchy = "created_at"
    search_fields = ["=pkey", "email", "mobile_phone", "registration_token"]
    search_help_text = (
        "A PKey or an address; ctx:TEXT looks for TEXT in the event's data, ctx:key=value (or "
        "ctx:order.id=42) compares one of its fields."
    )
    list_select_related = ["configuration"]
    inlines = [StatusChangeInline]
    show_full_result_count = False
    change_list_template = CSV_EXPORT_CHANGE_LIST
    export_name = "events"
    export_columns = [
        ("created_at", "created_at"),
        ("PKey", "pkey"),
        ("eventId", "event_type_id"),
        ("status", "status"),
        ("reason", "reason_text"),
        ("email", "email"),
        ("mobilePhone", "mobile_phone"),
        ("attempts", "attempts"),
        ("scheduled", "scheduled_at"),
        ("processed_at", "processed_at"),
        ("ctx", "ctx"),
    ]

    def get_list_filter(self, request):
        return self.list_filter

    def get_queryset(self, request):
        return with_last_reason(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term[:4].lower() == "ctx:":
            return search_ctx(queryset, term[4:]), False
        return super().get_search_results(request, queryset, search_term)

    def export_queryset(self, queryset):
        return queryset.annotate(
            event_type_id=Concat(Value("EVT"), "configuration__name", output_field=TextField()),
            reason_text=Coalesce(
                NullIf("last_error", Value("")), "last_reason", Value(""), output_field=TextField()
            ),
        )

    # The queue's bookkeeping: meaningful only while the event waits for (or is in) an attempt.
    QUEUE_FIELDS = ("next_attempt_at", "enqueued_at", "lease_expires_at")
    # Columns the page shows in words of its own (sent_again, recipient_profile, sends).
    SHOWN_OTHERWISE = ("request_fingerprint", "sent_again_from", "profile")
    actions = ["send_again"]

    def get_fields(self, request, obj=None):
        """Every column but the fingerprint, the status followed by why the event is there and the
        events it was sent again as (or from); the queue's times only while it is queued, the last
        error only if an attempt left one; the profile as recipient, and the sends it made."""
        fields: list[str] = []
        for name in (f.name for f in Event._meta.fields if f.name not in self.SHOWN_OTHERWISE):
            if obj is not None and name in self.QUEUE_FIELDS and not obj.is_queued:
                continue
            if name == "last_error" and obj is not None and not obj.last_error:
                continue
            fields.append(f"{name}_shown" if name in self.LINKED_WHERE_ALLOWED else name)
            if name == "status":
                fields += ["status_reason", "sent_again"]
            if name == "application" and (obj is None or obj.configuration.targeting == "profile"):
                fields.append("recipient_profile")
            if name == "message_version":
                fields.append("sends")
        return fields

    # Django links a read-only relation to its page whoever looks: a marketer would be sent to a 403.
    LINKED_WHERE_ALLOWED = {
        "organization": "campaign.view_organization",
        "configuration": "events.view_eventconfiguration",
    }

    def _shown(self, event: Event, name: str) -> str:
        """The related row's name, linked to its page only for who may open it."""
        related = getattr(event, name)
        if related is None:
            return "-"
        if name in getattr(event, "viewer_may_open", set()):
            meta = related._meta
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[related.pk])
            return format_html('<a href="{}">{}</a>', url, related)
        return str(related)

    @admin.display(description="Organization")
    def organization_shown(self, event: Event) -> str:
        return self._shown(event, "organization")

    @admin.display(description="Configuration")
    def configuration_shown(self, event: Event) -> str:
        return self._shown(event, "configuration")

    @admin.display(description="Sent again")
    def sent_again(self, event: Event) -> str:
        """The event this one sends again, and the events that sent this one again: links both ways."""
        lines: list[tuple[str, Event]] = []
        if event.sent_again_from is not None:
            lines.append(("As a new send of", event.sent_again_from))
        lines += [("As", again) for again in event.sent_again_as.order_by("id")]
        if not lines:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            '{} <a class="sent-again-link" href="{}">{}</a> ({})',
            (
                (words, reverse("admin:events_event_change", args=[other.pk]), other.pkey, other.status)
                for words, other in lines
            ),
        )

    @admin.display(description="Recipient profile")
    def recipient_profile(self, event: Event) -> str:
        """Profile targeting: the profile the event was reconciled with (its page, for who may open it)."""
        if event.configuration.targeting != "profile":
            return "-"
        profile = event.profile
        if profile is None:
            key = event.configuration.reconciliation_event_field
            return f"No profile found yet ({key} = {event.ctx.get(key, '')!s})"
        label = profile.email or profile.mobile_phone or f"profile {profile.pk}"
        if getattr(event, "viewer_may_open_profiles", False):
            url = reverse("admin:campaign_profile_change", args=[profile.pk])
            return format_html('<a id="recipient-profile" href="{}">{}</a>', url, label)
        return format_html('<span id="recipient-profile">{}</span>', label)

    @admin.display(description="Sent as")
    def sends(self, event: Event) -> str:
        """The deliveries this event made (each attempt), linked to their pages."""
        deliveries = list(event.deliveries.order_by("id"))
        if not deliveries:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            '<a class="delivery-link" href="{}">Delivery {} to {}</a>: {}',
            (
                (
                    reverse("admin:transactional_delivery_change", args=[d.pk]),
                    d.pk,
                    d.recipient if len(d.recipient) <= 40 else f"{d.recipient[:24]}…",
                    d.get_outcome_display(),
                )
                for d in deliveries
            ),
        )

    def get_object(self, request, object_id, from_field=None):
        event = super().get_object(request, object_id, from_field)
        if event is not None:  # on the object: one admin instance serves every request and thread
            event.viewer_may_open_profiles = request.user.has_perm("campaign.view_profile")
            allowed = self.LINKED_WHERE_ALLOWED.items()
            event.viewer_may_open = {name for name, perm in allowed if request.user.has_perm(perm)}
        return event

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = self.get_object(request, object_id)
        can_send_again = (
            event is not None
            and event.status in services.SENDABLE_AGAIN
            and self.has_send_again_permission(request)
        )
        context = {**(extra_context or {}), "can_send_again": can_send_again}
        if event is not None:
            story = event_timeline(event)
            context.update(timeline=timeline_rows(story["steps"]), timeline_truncated=story["truncated"])
        return super().change_view(request, object_id, form_url, context)

    def has_send_again_permission(self, request) -> bool:
        """Who manages event types (administrators) may send their failed events again."""
        return request.user.has_perm("events.change_eventconfiguration")

    @admin.action(description="Send again (failed events: a new event with the same data)",
                  permissions=["send_again"])  # fmt: skip
    def send_again(self, request, queryset):
        for event in queryset.select_related("configuration"):
            try:
                again = services.send_again(event=event)
            except services.CannotSendAgain as refusal:
                self.message_user(request, str(refusal), flash.ERROR)
                continue
            url = reverse("admin:events_event_change", args=[again.pk])
            expired = again.expiration_at is not None and again.expiration_at <= timezone.now()
            self.message_user(
                request,
                format_html(
                    'Event {} sent again as <a href="{}">{}</a>{}.',
                    event.pkey,
                    url,
                    again.pkey,
                    ", but its expiration date has passed: it will end tooOld" if expired else "",
                ),
                flash.WARNING if expired else flash.SUCCESS,
            )

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="Why")
    def status_reason(self, event: Event) -> str:
        """The reason of the latest status change (why it was processed, failed, ignored, retried)."""
        return getattr(event, "last_reason", None) or "-"

    @admin.display(description="Event", ordering="configuration__name")
    def event_type(self, event: Event) -> str:
        return event.configuration.event_id

    @admin.display(description="Reason")
    def reason(self, event: Event) -> str:
        """The last error, else the reason of the latest status change (why it is where it is)."""
        text = event.last_error or getattr(event, "last_reason", None) or ""
        return text if len(text) <= 80 else f"{text[:79]}…"

    @admin.display(description="Recipient")
    def recipient(self, event: Event) -> str:
        address = channel(event.configuration.channel).event_recipient(event).address
        return address if len(address) <= 40 else f"{address[:24]}…"  # push tokens are long

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.unregister(Profile)


@admin.register(Profile)
class PersonProfileAdmin(ProfileAdmin):
    """The profiles' page with the erasure of a person on request (events.person), an action of this
    app since it erases events and deliveries too."""

    actions = ["forget_people"]

    @admin.action(description="Forget the selected people (profile, events, deliveries, opens and clicks)",
                  permissions=["delete"])  # fmt: skip
    def forget_people(self, request, queryset):
        people = [profile for profile in queryset if profile.email]
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/campaign/profile/forget_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Forget these people?",
                    "opts": self.model._meta,
                    "people": people,
                    "without_email": queryset.filter(email="").count(),
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for profile in people:
            deleted = forget_person(organization=profile.organization, email=profile.email)
            summary = ", ".join(f"{count} {label}" for label, count in deleted.items())
            self.message_user(request, f"{profile.email} forgotten: {summary}.", flash.SUCCESS)
        return None


def attach_sends_of_last_day(messages: list[TransactionalMessage]) -> None:
    """Each message's sends (delivery attempts handed to its channel) of the last 24 hours, as
    `sent_last_day`: from the hourly rollups, in one query for all of them, whatever was sent."""
    since = rollups.hour_of(timezone.now()) - dt.timedelta(hours=23)
    sent = dict(
        HourlyRollup.objects.filter(
            configuration_id__in=[message.configuration.pk for message in messages], hour__gte=since
        )
        .values("configuration_id")
        .annotate(sent=Sum("sent"))
        .values_list("configuration_id", "sent")
    )
    for message in messages:
        message.sent_last_day = sent.get(message.configuration.pk, 0)  # type: ignore[attr-defined]


class MessageChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        attach_sends_of_last_day(list(self.result_list))


admin.site.unregister(TransactionalMessage)


@admin.register(TransactionalMessage)
class MessageWithSendsAdmin(TransactionalMessageAdmin):
    """The messages' list with each one's sends of the last 24 hours, read from the rollups of
    this app (messages knows nothing of events), linked to the message's report."""

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        shown.insert(shown.index("changes"), "sends_of_last_day")
        return shown

    def get_changelist(self, request, **kwargs):
        return MessageChangeList

    @admin.display(description="Sent, last 24 h")
    def sends_of_last_day(self, message: TransactionalMessage) -> str:
        return format_html(
            '<a class="sends-link" href="{}" title="{}">{}</a>',
            reverse("message-report", args=[message.pk]),
            "Delivery attempts of the last 24 hours (hourly counts): the message's report",
            getattr(message, "sent_last_day", 0),
        )


install_dashboard(admin.site)  # the admin index opens on the reports' dashboard


# --- Typology and fatigue rules (administrators; events.typology) -------------------------------------


class TypologyRuleInline(admin.TabularInline):
    """A typology's rules, listed; each is edited on its own page (a filter has its conditions)."""

    model = TypologyRule
    extra = 0
    fields = ("position", "code", "name", "kind", "active", "window_minutes", "combine")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Typology)
class TypologyAdmin(OrganizationScopedAdmin):
    """Typologies: sets of rules that profile-based messages pass ("address on denylist" always
    applies first and has no row). One per organization is the default."""

    list_display = ["name", "is_default", "created_at"]
    inlines = [TypologyRuleInline]

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_default:
            return False  # configurations without a typology use it
        return super().has_delete_permission(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class TypologyForm(form):
            def clean(self):
                cleaned = super().clean()
                organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
                if cleaned.get("is_default") and organization is not None:
                    taken = Typology.objects.filter(organization=organization, is_default=True)
                    if taken.exclude(pk=self.instance.pk).exists():
                        self.add_error("is_default", "This organization has a default typology already.")
                elif self.instance.pk and self.instance.is_default and not cleaned.get("is_default"):
                    self.add_error("is_default", "Make another typology the default instead.")
                return cleaned

        return TypologyForm


class FilterConditionForm(forms.ModelForm):
    class Meta:
        model = FilterCondition
        fields = ["position", "field", "operator", "value"]

    def clean(self):
        cleaned = super().clean()
        problems = typology.condition_problem(
            field=cleaned.get("field") or "",
            operator=cleaned.get("operator") or "",
            value=cleaned.get("value") or "",
        )
        for name, problem in problems.items():
            if name not in self.errors:
                self.add_error(name, problem)
        return cleaned


class FilterConditionFormSet(forms.BaseInlineFormSet):
    """A filter has 1 to FILTER_MAX_CONDITIONS conditions, a duplicate rule none. The rule here
    carries what the page submitted (the admin builds it from the rule's form first)."""

    def clean(self):
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get("field")
        ]
        problem = typology.conditions_problem(kind=self.instance.kind, conditions=len(kept))
        if problem:
            raise forms.ValidationError(problem)


class FilterConditionInline(admin.TabularInline):
    model = FilterCondition
    form = FilterConditionForm
    formset = FilterConditionFormSet
    extra = 1
    max_num = typology.FILTER_MAX_CONDITIONS


class TypologyRuleForm(forms.ModelForm):
    class Meta:
        model = TypologyRule
        fields = ["typology", "position", "kind", "code", "name", "active", "window_minutes", "combine"]

    def clean(self):
        cleaned = super().clean()
        problems = typology.rule_problem(
            kind=cleaned.get("kind") or "", window_minutes=cleaned.get("window_minutes")
        )
        for name, problem in problems.items():
            if name not in self.errors:
                self.add_error(name, problem)
        code, owner = cleaned.get("code"), cleaned.get("typology")
        if code and owner is not None:
            taken = TypologyRule.objects.filter(typology=owner, code=code).exclude(pk=self.instance.pk)
            if taken.exists():
                self.add_error("code", "This typology has a rule with this code already.")
            if code in (typology.DENYLIST, typology.FATIGUE):
                self.add_error("code", f"'{code}' is the code of a built-in rule.")
        return cleaned


@admin.register(TypologyRule)
class TypologyRuleAdmin(OrganizationScopedAdmin):
    """A rule of a typology: a profile filter (conditions on profile fields, combined with and/or;
    a matching profile is excluded) or the duplicate rule. Checked when saved."""

    organization_path = "typology__organization"
    form = TypologyRuleForm
    inlines = [FilterConditionInline]
    list_display = ["code", "name", "typology", "kind", "position", "active"]
    list_filter = ["kind", "active"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        organization = organization_of(request)
        if db_field.name == "typology" and organization is not None:
            kwargs["queryset"] = Typology.objects.filter(organization=organization)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(FatigueRule)
class FatigueRuleAdmin(OrganizationScopedAdmin):
    """At most N profile-based messages per profile per period (one channel, or all): every
    profile-based message of the organization counts; event-based ones never do."""

    list_display = ["name", "channel", "max_messages", "period_hours", "active"]
    list_filter = ["channel", "active"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class FatigueRuleForm(form):
            def clean(self):
                cleaned = super().clean()
                problems = typology.fatigue_problem(
                    max_messages=cleaned.get("max_messages"), period_hours=cleaned.get("period_hours")
                )
                for name, problem in problems.items():
                    if name not in self.errors:
                        self.add_error(name, problem)
                return cleaned

        return FatigueRuleForm


from events import admin_webhooks  # noqa: E402, F401  - registers the webhook endpoints
