"""The admin is the product's UI. This module holds the organization scoping every admin page uses,
and the pages for organizations, users and roles, API credentials, sender domains, the proof
allow-list, profiles and the quarantine.

Every non-superuser belongs to one organization (Membership) and sees, chooses and changes only
that organization's objects: querysets, foreign-key choices and new objects are all scoped here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django import forms
from django.contrib import admin
from django.contrib import messages as flash
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaign import senders, services
from campaign.auth import forget_tokens
from campaign.csv_export import stream_csv
from campaign.login import StaffLoginForm
from campaign.models import (
    OPT_OUT_COLUMNS,
    AccessToken,
    ApiCredential,
    CustomResource,
    CustomResourceRow,
    Membership,
    Organization,
    Profile,
    ProofRecipient,
    Quarantine,
    SenderDomain,
)
from campaign.roles import ROLE_NAMES

admin.site.site_header = "Transactional messaging"
admin.site.site_title = "Transactional messaging"
admin.site.index_title = "Events, messages and deliveries"
admin.site.login_form = StaffLoginForm


def organization_of(request: HttpRequest) -> Organization | None:
    """The caller's organization; None for a superuser (who sees every organization)."""
    user = request.user
    if user.is_superuser:
        return None
    membership = getattr(user, "membership", None) if user.is_authenticated else None
    if membership is None:
        raise PermissionDenied("Your account belongs to no organization.")
    return membership.organization


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Scopes a model admin to the caller's organization through `organization_path`."""

    organization_path = "organization"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        organization = organization_of(request)
        if organization is None:
            return queryset
        return queryset.filter(**{self.organization_path: organization})

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs):
        form: type[forms.ModelForm] = super().get_form(request, obj, change, **kwargs)
        organization = organization_of(request)
        if organization is None or self.organization_path != "organization":
            return form

        class OrganizationOwnedForm(form):  # type: ignore[valid-type,misc]  # a class made per request
            """The organization is not a field of the page, yet the model's uniqueness rules name it
            (a profile's email, a quarantined address, an event's name): set it before validation
            and keep it in the checks, so a duplicate is a form error instead of an IntegrityError."""

            def __init__(self, *args, **inner):
                super().__init__(*args, **inner)
                if self.instance.organization_id is None:
                    self.instance.organization = organization

            def _get_validation_exclusions(self):
                exclusions = super()._get_validation_exclusions()
                exclusions.discard("organization")
                return exclusions

        return OrganizationOwnedForm

    def get_exclude(self, request: HttpRequest, obj: Model | None = None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and self.organization_path == "organization":
            exclude.append("organization")
        return exclude

    def get_list_filter(self, request: HttpRequest):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser and self.organization_path:
            filters.append(self.organization_path)
        return filters

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        organization = organization_of(request)
        if organization is not None:
            related = db_field.related_model
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk=organization.pk)
            elif any(f.name == "organization" for f in related._meta.get_fields()):
                kwargs["queryset"] = related._default_manager.filter(organization=organization)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Model, form, change: bool) -> None:
        organization = organization_of(request)
        if organization is not None and self.organization_path == "organization" and not change:
            obj.organization = organization  # type: ignore[attr-defined]  # every scoped model has one
        super().save_model(request, obj, form, change)


class PeriodFilter(admin.SimpleListFilter):
    """The last 24 hours, 7 or 30 days of `field_name` (the date hierarchy picks a calendar period)."""

    title = "period"
    parameter_name = "period"
    field_name = "created_at"
    PERIODS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}

    def lookups(self, request, model_admin):
        return [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")]

    def queryset(self, request, queryset):
        length = self.PERIODS.get(self.value() or "")
        if length is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - length})


CSV_EXPORT_CHANGE_LIST = "admin/csv_export_change_list.html"


class CsvExportMixin:
    """An "Export CSV" button on the list: the rows of the list's current filter and search,
    streamed (campaign.csv_export), with the organization scoping of the list itself.

    `export_columns`: (header, field path for values_list) pairs; the admin's `change_list_template`
    is CSV_EXPORT_CHANGE_LIST (the button)."""

    export_columns: Sequence[tuple[str, str]] = ()
    export_name = "export"

    def get_urls(self):
        opts = self.model._meta  # type: ignore[attr-defined]  # a ModelAdmin mixin
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),  # type: ignore[attr-defined]
            name=f"{opts.app_label}_{opts.model_name}_export",
        )
        return [export, *super().get_urls()]  # type: ignore[misc]  # before the catch-all object URL

    def export_queryset(self, queryset: QuerySet) -> QuerySet:
        """The queryset the columns are read from (to add annotations)."""
        return queryset

    def export_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter in the address: export from the list's own links.")
        queryset = self.export_queryset(changelist.get_queryset(request))
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return stream_csv(
            filename=f"{self.export_name}-{stamp}.csv",
            header=[header for header, _ in self.export_columns],
            queryset=queryset,
            columns=[column for _, column in self.export_columns],
        )


class OrganizationForm(forms.ModelForm):
    def clean_sender_address(self) -> str:
        """The default sender is a From address like any other: its domain must be declared (a new
        organization's is declared with it, as `create_organization --sender` does)."""
        address = self.cleaned_data.get("sender_address", "")
        problem = senders.default_sender_problem(self.instance, address)
        if problem:
            raise forms.ValidationError(f"{problem} Declare its domain under Sender domains first.")
        return address


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["slug", "name", "sender_address", "created_at"]
    search_fields = ["slug", "name"]

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if not change:
                senders.declare_default_sender_domain(obj)

    def get_queryset(self, request):
        organization = organization_of(request)
        queryset = super().get_queryset(request)
        return queryset if organization is None else queryset.filter(pk=organization.pk)

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["slug"]

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(ApiCredential)
class ApiCredentialAdmin(OrganizationScopedAdmin):
    list_display = ["name", "api_key", "organization", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "api_key"]
    readonly_fields = ["api_key", "created_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and not obj.is_active:
            readonly.append("is_active")  # revoked for good: its tokens are gone; issue a new credential
        return readonly

    def get_fields(self, request, obj=None):
        fields = ["name", "api_key", "is_active", "created_at"]
        return (["organization"] if request.user.is_superuser else []) + fields

    def save_model(self, request, obj, form, change):
        if change:
            if "is_active" in form.changed_data and not obj.is_active:
                services.revoke_credential(credential=obj)
            obj.save(update_fields=["name"])
            return
        organization = organization_of(request) or obj.organization
        issued = services.create_api_credential(organization=organization, name=obj.name)
        obj.pk, obj.api_key = issued.credential.pk, issued.credential.api_key
        obj.secret_hash, obj.organization = issued.credential.secret_hash, organization
        flash.warning(
            request,
            f"API key: {issued.credential.api_key} — client secret: {issued.client_secret} "
            "(copy it now: it is stored only hashed and will not be shown again).",
        )

    def delete_model(self, request, obj):
        services.revoke_credential(credential=obj)  # drops its cached tokens, which deletion alone keeps
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for credential in queryset:
            services.revoke_credential(credential=credential)
        super().delete_queryset(request, queryset)

    @admin.action(description="Revoke the selected credentials and their tokens")
    def revoke(self, request, queryset):
        for credential in queryset:
            services.revoke_credential(credential=credential)
        self.message_user(request, f"{queryset.count()} credential(s) revoked.")


@admin.register(AccessToken)
class AccessTokenAdmin(OrganizationScopedAdmin):
    organization_path = "credential__organization"
    list_display = ["credential", "created_at", "expires_at"]
    readonly_fields = ["credential", "created_at", "expires_at"]
    exclude = ["token_hash"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        # A deleted token must stop authenticating now, not when the API's cache of it expires.
        with transaction.atomic():
            super().delete_model(request, obj)
            forget_tokens()

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            super().delete_queryset(request, queryset)
            forget_tokens()


class ProfileForm(forms.ModelForm):
    def clean_email(self) -> str:
        email = self.cleaned_data.get("email", "")
        organization = self.cleaned_data.get("organization") or getattr(self.instance, "organization", None)
        if email and organization is not None:
            taken = Profile.objects.filter(organization=organization, email__iexact=email)
            if taken.exclude(pk=self.instance.pk).exists():
                raise forms.ValidationError("A profile with this email already exists in this organization.")
        return email


@admin.register(Profile)
class ProfileAdmin(OrganizationScopedAdmin):
    form = ProfileForm
    list_display = [
        "email",
        "first_name",
        "last_name",
        "mobile_phone",
        "language",
        "opted_out_of",
        "blocklisted",
        "is_test",
    ]
    list_filter = ["is_test", "opted_out_email", "opted_out_sms", "opted_out_push", "blocklisted", "language"]
    search_fields = ["email", "first_name", "last_name", "mobile_phone"]

    @admin.display(description="opted out of")
    def opted_out_of(self, profile: Profile) -> str:
        """The channels, in one column: the list keeps its width."""
        labels = {"email": "email", "sms": "SMS", "push": "push"}
        return ", ".join(labels[c] for c in OPT_OUT_COLUMNS if profile.opted_out_of(c)) or "-"


@admin.register(SenderDomain)
class SenderDomainAdmin(OrganizationScopedAdmin):
    """Administrators declare the domains their messages may send from (campaign.senders)."""

    list_display = ["domain", "organization", "created_at"]
    search_fields = ["domain"]


@admin.register(ProofRecipient)
class ProofRecipientAdmin(OrganizationScopedAdmin):
    """Where proofs may go besides test profiles: addresses, whole domains, phones, push tokens."""

    list_display = ["value", "kind", "organization", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value"]


@admin.register(Quarantine)
class QuarantineAdmin(OrganizationScopedAdmin):
    list_display = ["address", "channel", "reason", "created_at"]
    list_filter = ["channel"]
    search_fields = ["address"]


class ReadOnlyAdmin(OrganizationScopedAdmin):
    """Rows written by an import (`import_resource`), read here only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CustomResource)
class CustomResourceAdmin(ReadOnlyAdmin):
    """An organization's lookup tables (a product catalogue), imported with `import_resource`."""

    list_display = ["name", "key_column", "row_count", "columns_shown", "rows_link", "imported_at"]
    search_fields = ["name"]
    fields = ["name", "key_column", "columns", "row_count", "imported_at"]
    readonly_fields = ["name", "key_column", "columns", "row_count", "imported_at"]

    @admin.display(description="Columns")
    def columns_shown(self, resource: CustomResource) -> str:
        return ", ".join(resource.columns)

    @admin.display(description="Rows")
    def rows_link(self, resource: CustomResource) -> str:
        url = reverse("admin:campaign_customresourcerow_changelist") + f"?resource__id__exact={resource.pk}"
        return format_html('<a href="{}">{} row(s)</a>', url, resource.row_count)


@admin.register(CustomResourceRow)
class CustomResourceRowAdmin(ReadOnlyAdmin):
    organization_path = "resource__organization"
    list_display = ["key", "resource", "data"]
    list_select_related = ["resource"]
    search_fields = ["key"]
    fields = ["resource", "key", "data"]
    readonly_fields = ["resource", "key", "data"]

    def get_list_filter(self, request):
        return [("resource", admin.RelatedOnlyFieldListFilter)]


class MembershipInline(admin.StackedInline):
    model = Membership
    can_delete = False
    extra = 1
    max_num = 1


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(GroupAdmin):
    def has_module_permission(self, request):
        return request.user.is_superuser


@admin.register(User)
class MemberAdmin(UserAdmin):
    """Administrators manage their organization's users and give them one of the two roles."""

    list_display = ["username", "email", "first_name", "last_name", "role", "organization", "is_active"]

    @admin.display(description="Role")
    def role(self, user: User) -> str:
        return ", ".join(g.name for g in user.groups.all()) or ("superuser" if user.is_superuser else "")

    @admin.display(description="Organization")
    def organization(self, user: User) -> str:
        membership = getattr(user, "membership", None)
        return membership.organization.slug if membership else ""

    def get_queryset(self, request):
        queryset = (
            super()
            .get_queryset(request)
            .select_related("membership__organization")
            .prefetch_related("groups")
        )
        organization = organization_of(request)
        if organization is None:
            return queryset
        return queryset.filter(membership__organization=organization, is_superuser=False)

    def get_inlines(self, request, obj):
        return [MembershipInline] if request.user.is_superuser else []

    def get_fieldsets(self, request, obj=None):
        if request.user.is_superuser:
            return super().get_fieldsets(request, obj)
        if obj is None:
            return (
                (None, {"fields": ("username", "usable_password", "password1", "password2")}),
                ("Role", {"fields": ("groups",)}),
            )
        return (
            (None, {"fields": ("username", "password")}),
            ("Person", {"fields": ("first_name", "last_name", "email")}),
            ("Role", {"fields": ("is_active", "groups")}),
        )

    def get_list_filter(self, request):
        if request.user.is_superuser:
            return ["groups", "is_active", "is_superuser"]
        # Only the groups the organization's users have: not every group of the installation.
        return [("groups", admin.RelatedOnlyFieldListFilter), "is_active"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = Group.objects.filter(name__in=ROLE_NAMES)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        organization = organization_of(request)
        if organization is not None:
            obj.is_staff = True
            obj.is_superuser = False
        super().save_model(request, obj, form, change)
        if organization is not None and not change:
            Membership.objects.get_or_create(user=obj, defaults={"organization": organization})
