"""The marketer's extra admin pages of a message: preview with editable sample data, proofs,
the difference between versions, and republishing an older version.

Each view is reached through TransactionalMessageAdmin.get_urls, so the admin's login, permission
and organization scoping (get_object through the scoped queryset) apply before anything here runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from campaign import bounds
from campaign.models import Profile
from messages import services
from messages.channels import channel as channel_of
from messages.lifecycle import PublicationEffects, PublicationError, SampleDataError, event_side
from messages.models import MessageVersion, TransactionalMessage


class PreviewForm(forms.Form):
    ctx = forms.CharField(
        label="Sample data (ctx, JSON)", widget=forms.Textarea(attrs={"rows": 12, "cols": 80}), required=False
    )

    def __init__(self, *args, schema: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.schema = schema

    def clean_ctx(self) -> dict:
        """The sample data under the API's own rules: what an event could not carry, a preview
        does not render."""
        raw = self.cleaned_data["ctx"].strip()
        if not raw:
            return {}
        try:
            value = bounds.load_json(raw)
        except bounds.JsonSyntaxError as error:
            raise forms.ValidationError(str(error)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The sample data is a JSON object, like the event's ctx.")
        try:
            return event_side().check_ctx(self.schema, value)
        except SampleDataError as error:
            raise forms.ValidationError(f"{error.field}: {error.message}") from None


class TestProfilePreviewForm(PreviewForm):
    profile = forms.ModelChoiceField(
        queryset=Profile.objects.none(),
        required=False,
        label="As test profile",
        help_text="Render with the test profile's fields and, if it has some for this event, its own "
        "sample data (instead of the data above).",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        profile = cast(forms.ModelChoiceField, self.fields["profile"])
        profile.queryset = Profile.objects.filter(organization=organization, is_test=True)


class ProofForm(PreviewForm):
    addresses = forms.CharField(
        label="Test addresses",
        required=False,
        max_length=4000,
        help_text="Separated by commas or new lines: addresses of test profiles or of the proof "
        "allow-list that an administrator keeps.",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )
    profiles = forms.ModelMultipleChoiceField(
        queryset=Profile.objects.none(), required=False, label="Test profiles"
    )

    def __init__(self, *args, organization, channel: str, **kwargs):
        super().__init__(*args, **kwargs)
        of_channel = channel_of(channel)
        if not of_channel.profile_has_address:
            # A profile has no address on this channel (no push token): the allow-list only.
            del self.fields["profiles"]
            self.fields["addresses"].label = of_channel.proof_addresses_label
            self.fields[
                "addresses"
            ].help_text = "Separated by commas or new lines, from the proof allow-list."
        else:
            # Test profiles only: a marketer has no right to browse the marketing database here.
            profiles = cast(forms.ModelMultipleChoiceField, self.fields["profiles"])
            profiles.queryset = Profile.objects.filter(organization=organization, is_test=True)


def _message_or_404(model_admin, request, object_id) -> TransactionalMessage:
    message = model_admin.get_object(request, object_id)
    if message is None:
        raise Http404("No such message.")
    if not model_admin.has_view_permission(request, message):
        raise PermissionDenied
    return message


def _context(model_admin, request, message, **extra) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "original": message,
        "title": extra.pop("title"),
        "change_url": reverse("admin:transactional_transactionalmessage_change", args=[message.pk]),
        **extra,
    }


def preview_view(model_admin, request, object_id):
    message = _message_or_404(model_admin, request, object_id)
    schema = services.configuration_schema(message)
    default_ctx = event_side().sample_ctx(schema)
    form = TestProfilePreviewForm(
        request.POST or None,
        schema=schema,
        organization=message.configuration.organization,
        initial={"ctx": json.dumps(default_ctx, indent=2)},
    )
    ctx, profile = default_ctx, None
    if request.method == "POST" and form.is_valid():
        ctx = form.cleaned_data["ctx"]
        profile = form.cleaned_data.get("profile")
    rendered, error = None, ""
    try:
        if profile is not None:  # its own sample data, if it has some for this event
            own = services.profile_sample(message=message, profile=profile)
            ctx = own if own is not None else ctx
        rendered = services.preview_message(message=message, ctx=ctx, profile=profile)
    except Exception as exc:  # show the template's problem to the marketer, not a 500
        error = f"{exc.__class__.__name__}: {exc}"
    of_channel = channel_of(message.channel)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/preview.html",
        _context(
            model_admin,
            request,
            message,
            title=f"Preview of {message.configuration.event_id}",
            form=form,
            rendered=rendered,
            error=error,
            channel=message.channel,
            preview_template=of_channel.preview_template,
            **(of_channel.preview_context(rendered) if rendered else {}),
        ),
    )


def proof_view(model_admin, request, object_id):
    message = _message_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, message):
        raise PermissionDenied
    organization = message.configuration.organization
    schema = services.configuration_schema(message)
    default_ctx = event_side().sample_ctx(schema)
    form = ProofForm(
        request.POST or None,
        organization=organization,
        channel=message.channel,
        schema=schema,
        initial={"ctx": json.dumps(default_ctx, indent=2)},
    )
    if request.method == "POST" and form.is_valid():
        addresses = [a for chunk in form.cleaned_data["addresses"].splitlines() for a in chunk.split(",")]
        try:
            deliveries = services.send_proof(
                message=message,
                addresses=addresses,
                profiles=list(form.cleaned_data.get("profiles") or []),
                ctx=form.cleaned_data["ctx"] or default_ctx,
                user=request.user,
            )
        except services.ProofError as error:
            form.add_error(None, str(error))
        except Exception as error:  # a template that fails to render: tell, don't crash
            form.add_error(None, f"The proof could not be rendered: {error}")
        else:
            for delivery in deliveries:
                level = flash.SUCCESS if delivery.outcome == "sent" else flash.ERROR
                flash.add_message(
                    request,
                    level,
                    f"Proof to {delivery.recipient}: {delivery.outcome} {delivery.provider_response}".strip(),
                )
            return HttpResponseRedirect(
                reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
            )
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/proof.html",
        _context(
            model_admin,
            request,
            message,
            title=f"Send a proof of {message.configuration.event_id}",
            form=form,
            proof_rate=settings.PROOF_RATE_PER_MINUTE,
        ),
    )


def diff_view(model_admin, request, object_id):
    """`?a=<number>&b=<number|draft>`: what changed between two versions (or a version and the draft)."""
    message = _message_or_404(model_admin, request, object_id)
    versions = {v.number: v for v in message.versions.all()}
    live = message.live_version.number if message.live_version else None

    def content_of(key: str | None, default):
        if key in (None, ""):
            return default
        if key == "draft":
            return ("draft", message.draft_content())
        try:
            version = versions[int(key)]
        except (ValueError, KeyError):
            raise Http404("No such version.") from None
        return (f"v{version.number}", version.content)

    older = content_of(request.GET.get("a"), (f"v{live}", versions[live].content) if live else ("empty", {}))
    newer = content_of(request.GET.get("b"), ("draft", message.draft_content()))
    differences = services.content_difference(older=older[1], newer=newer[1], channel=message.channel)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/diff.html",
        _context(
            model_admin,
            request,
            message,
            title=f"{older[0]} → {newer[0]} of {message.configuration.event_id}",
            differences=differences,
            versions=sorted(versions.values(), key=lambda v: -v.number),
            live=message.published_version.number if message.published_version else None,
            older=older[0],
            newer=newer[0],
            has_change_permission=model_admin.has_change_permission(request, message),
        ),
    )


def _changeable_message(model_admin, request, object_id) -> TransactionalMessage:
    message = _message_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, message):
        raise PermissionDenied
    return message


def _confirm_then(
    model_admin,
    request,
    message: TransactionalMessage,
    *,
    title: str,
    button: str,
    effects: PublicationEffects,
    act: Callable[[], str],
    **extra,
):
    """A publication move on its own page: GET says what it will do (`effects`), the page's POST
    makes it (`act` answers the success message) and goes back to the message."""
    change_url = reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
    if request.method == "POST" and not effects.refusal:
        try:
            done = act()
        except PublicationError as error:
            for line in error.errors:
                flash.error(request, line)
        else:
            flash.success(request, done)
        return HttpResponseRedirect(change_url)
    return TemplateResponse(
        request,
        "admin/transactional/transactionalmessage/confirm.html",
        _context(
            model_admin,
            request,
            message,
            title=title,
            button=button,
            effects=effects,
            configuration=message.configuration,
            **extra,
        ),
    )


def pause_view(model_admin, request, object_id):
    message = _changeable_message(model_admin, request, object_id)

    def pause() -> str:
        event_side().pause(message=message, user=request.user)
        return f"The message of {message.configuration.event_id} is paused."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Pause the message of {message.configuration.event_id}?",
        button="Yes, pause",
        effects=event_side().pause_effects(message),
        act=pause,
        step="Pause",
    )


def unpublish_view(model_admin, request, object_id):
    message = _changeable_message(model_admin, request, object_id)

    def unpublish() -> str:
        event_side().unpublish(message=message, user=request.user)
        return f"The message of {message.configuration.event_id} is unpublished: its endpoint is down."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Unpublish the message of {message.configuration.event_id}?",
        button="Yes, unpublish",
        effects=event_side().unpublish_effects(message),
        act=unpublish,
        step="Unpublish",
    )


def republish_view(model_admin, request, object_id, number):
    message = _changeable_message(model_admin, request, object_id)
    version = MessageVersion.objects.filter(message=message, number=number).first()
    if version is None:
        raise Http404("No such version.")

    def republish() -> str:
        new_version = event_side().republish(version=version, user=request.user)
        return f"v{number} is live again (as v{new_version.number})."

    return _confirm_then(
        model_admin,
        request,
        message,
        title=f"Republish v{number} of {message.configuration.event_id}?",
        button=f"Yes, republish v{number}",
        effects=event_side().republish_effects(version),
        act=republish,
        step=f"Republish v{number}",
        version=version,
        versions_url=reverse("admin:transactional_transactionalmessage_versions", args=[message.pk]),
    )
