"""Admin pages of an organization's providers (administrators): a kind picked from the fixed list,
its fields checked (bounds, hosts and URLs that may be reached), its secrets shown only as "set",
replaced by typing a new one or cleared by a tick; every change seen by the workers without a
restart (messages.org_providers)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from campaign import encryption
from campaign.admin import OrganizationScopedAdmin, organization_of
from messages import org_providers
from messages.models import OrganizationProvider
from messages.provider_kinds import (
    KINDS,
    Field,
    FieldProblem,
    Kind,
    build_problem,
    check_options,
    check_secret,
    smtp_problem,
)

SEPARATOR = "__"


def form_name(kind: Kind, item: Field) -> str:
    """The form field of a kind's field: `<kind>__<field>` (every kind's fields are on the add page)."""
    return f"{kind.key}{SEPARATOR}{item.name}"


def clear_name(kind: Kind, item: Field) -> str:
    return f"{form_name(kind, item)}{SEPARATOR}clear"


class SecretTextarea(forms.Textarea):
    """A textarea that never shows its value back (a service account's key), even on a form error."""

    def format_value(self, value: Any) -> None:
        return None


def _form_field(item: Field) -> forms.Field:
    help_text = item.help
    if item.secret:
        widget: forms.Widget = (
            SecretTextarea(attrs={"rows": 4, "autocomplete": "off"})
            if item.type == "service_account"
            else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        )
        return forms.CharField(
            label=item.label, required=False, widget=widget, strip=False, help_text=help_text
        )
    if item.type == "bool":
        return forms.BooleanField(label=item.label, required=False, help_text=help_text)
    if item.type == "port":
        return forms.IntegerField(label=item.label, required=False, help_text=help_text or "1 to 65535.")
    if item.type == "seconds":
        return forms.FloatField(label=item.label, required=False, help_text=help_text)
    return forms.CharField(label=item.label, required=False, help_text=help_text, max_length=600)


def _kind_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for kind in KINDS.values():
        for item in kind.fields:
            fields[form_name(kind, item)] = _form_field(item)
            if item.secret:
                fields[clear_name(kind, item)] = forms.BooleanField(
                    label=f"Clear the {item.label.lower()}", required=False
                )
    return fields


class OrganizationProviderBaseForm(forms.ModelForm):
    """The provider's own fields, and every kind's fields (named `<kind>__<field>`): only the chosen
    kind's are read. A secret left empty keeps the stored one."""

    class Meta:
        model = OrganizationProvider
        fields = ["organization", "name", "kind", "position", "rate_limit", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = self.instance
        self.stored_secrets: dict[str, str] = {}
        if instance.pk and instance.kind in KINDS:
            kind = KINDS[instance.kind]
            for item in kind.options:
                name = form_name(kind, item)
                if name in self.fields:
                    self.fields[name].initial = (instance.options or {}).get(item.name)
            set_names = org_providers.secrets_set(instance)
            for item in kind.secrets:
                name = form_name(kind, item)
                if name in self.fields:
                    state = (
                        "set: leave empty to keep it, type to replace it"
                        if item.name in set_names
                        else "not set"
                    )
                    self.fields[name].help_text = " ".join(p for p in (f"({state})", item.help) if p)
        else:
            for kind in KINDS.values():
                for item in kind.options:
                    name = form_name(kind, item)
                    if name in self.fields and item.default is not None:
                        self.fields[name].initial = item.default

    def _get_validation_exclusions(self):
        # The channel comes from the kind (set in clean): a name used twice in a channel is a form
        # error, not an IntegrityError.
        exclusions = super()._get_validation_exclusions()
        exclusions.discard("channel")
        return exclusions

    def chosen_kind(self) -> Kind | None:
        key = self.cleaned_data.get("kind") or self.instance.kind
        return KINDS.get(key) if key else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = self.chosen_kind()
        if kind is None:
            return cleaned
        self.instance.channel = kind.channel
        checked = check_options(
            kind, {item.name: cleaned.get(form_name(kind, item)) for item in kind.options}
        )
        for name, problem in checked.problems.items():
            target = form_name(kind, kind.field(name)) if name else None
            self.add_error(target if target in self.fields else None, problem)
        self.checked_options = checked.options
        try:
            stored = org_providers.secrets_of(self.instance) if self.instance.pk else {}
        except encryption.InvalidToken:  # a key rotated away: what is typed now replaces it
            stored = {}
        secrets: dict[str, str] = {}
        for item in kind.secrets:
            typed = cleaned.get(form_name(kind, item)) or ""
            if cleaned.get(clear_name(kind, item)):
                value = ""
            elif typed:
                try:
                    value = check_secret(item, typed)
                except FieldProblem as problem:
                    self.add_error(form_name(kind, item), str(problem))
                    continue
            else:
                value = stored.get(item.name, "")
            if item.required and not value:
                self.add_error(form_name(kind, item), "This field is required.")
            secrets[item.name] = value
        self.checked_secrets = secrets
        if kind.key == "smtp" and not checked.problems:
            in_clear = smtp_problem(checked.options, secrets)
            if in_clear:
                self.add_error(form_name(kind, kind.field("use_tls")), in_clear)
        if not self.errors:
            # Built now (no network): what would make every send fail is a form error instead.
            unbuildable = build_problem(kind, checked.options, secrets, provider_id=self.instance.pk or 0)
            if unbuildable:
                self.add_error(None, unbuildable)
        return cleaned


class SendTestForm(forms.Form):
    recipient = forms.CharField(
        max_length=500,
        help_text="An email address, phone number or push token of a test profile or of the proof "
        "allow-list.",
    )


OrganizationProviderForm = type(
    "OrganizationProviderForm", (OrganizationProviderBaseForm,), {**_kind_fields(), "__module__": __name__}
)


@admin.register(OrganizationProvider)
class OrganizationProviderAdmin(OrganizationScopedAdmin):
    form = OrganizationProviderForm
    list_display = [
        "name",
        "channel",
        "kind",
        "position",
        "rate_limit",
        "enabled",
        "secrets_shown",
        "updated_at",
        "test_link",
    ]
    list_filter = ["channel", "kind", "enabled"]
    ordering = ["channel", "position", "id"]

    class Media:
        # Only the chosen kind's fields shown (a file: the Content-Security-Policy allows no inline script).
        js = ["campaign/provider_form.js"]

    def get_readonly_fields(self, request, obj=None):
        # The name is fixed once created: deliveries name the provider that sent them, and its later
        # reports (bounces, receipts) are joined to them by it.
        return ["name", "kind", "channel", "updated_at", "test_link"] if obj is not None else []

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Every POSTed value hidden from error reports (the secrets are among them).
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_fieldsets(self, request, obj=None):
        main = ["name", "kind", "position", "rate_limit", "enabled"]
        if obj is not None:
            main = ["name", "kind", "channel", "position", "rate_limit", "enabled", "updated_at", "test_link"]
        if request.user.is_superuser:
            main = ["organization", *main]
        kinds = [KINDS[obj.kind]] if obj is not None and obj.kind in KINDS else list(KINDS.values())
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [(None, {"fields": main})]
        for kind in kinds:
            names: list[str] = []
            for item in kind.fields:
                names.append(form_name(kind, item))
                if item.secret:
                    names.append(clear_name(kind, item))
            fieldsets.append(
                (
                    f"{kind.label} ({kind.channel})",
                    {"fields": names, "classes": ["provider-kind", f"provider-kind-{kind.key}"]},
                )
            )
        return fieldsets

    def get_urls(self):
        return [
            path(
                "<path:object_id>/test/",
                self.admin_site.admin_view(self.test_view),
                name="transactional_organizationprovider_test",
            ),
            *super().get_urls(),
        ]

    def test_view(self, request, object_id):
        """Send a test: one message through this provider alone, to a proof recipient."""
        provider = self.get_object(request, object_id)  # scoped to the caller's organization
        if provider is None:
            raise Http404("No such provider.")
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        form = SendTestForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            try:
                result = org_providers.send_test(
                    provider=provider, typed=form.cleaned_data["recipient"], user_id=request.user.pk
                )
            except org_providers.TestRefused as refused:
                form.add_error("recipient", str(refused))
        return TemplateResponse(
            request,
            "admin/transactional/organizationprovider/send_test.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": provider,
                "title": f"Send a test through {provider.name}",
                "form": form,
                "result": result,
            },
        )

    @admin.display(description="Test")
    def test_link(self, provider: OrganizationProvider) -> str:
        if provider.pk is None:
            return "—"
        url = reverse("admin:transactional_organizationprovider_test", args=[provider.pk])
        return format_html('<a class="send-test-link" href="{}">Send a test</a>', url)

    @admin.display(description="Secrets")
    def secrets_shown(self, provider: OrganizationProvider) -> str:
        names = org_providers.secrets_set(provider)
        return ", ".join(f"{name}: set" for name in sorted(names)) or "—"

    def save_model(self, request, obj, form, change):
        organization = organization_of(request)
        if organization is not None and not change:
            obj.organization = organization
        obj.options = form.checked_options
        org_providers.save(obj, secrets=form.checked_secrets)

    def delete_model(self, request, obj):
        org_providers.delete([obj])

    def delete_queryset(self, request, queryset):
        org_providers.delete(list(queryset))
