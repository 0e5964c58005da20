"""The reports' admin pages: the dashboard the admin index opens on (the caller's organization; a
superuser sees every organization or picks one) and a message's report (all its versions, or one).
The numbers come from events.reports; these views only read the request and scope it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from campaign.admin import organization_of
from campaign.models import Organization
from events import reports
from events.models import EventConfiguration, HourlyRollup
from events.rollups import FAILURE_FIELDS
from messages.models import MessageVersion, TransactionalMessage


def _period(
    request: HttpRequest, organization: Organization | None
) -> tuple[reports.PeriodForm, reports.Period]:
    form = reports.PeriodForm(request.GET or None)
    time_zone = reports.time_zone_of(organization)
    if not form.is_valid():  # a wrong custom period: its errors shown, the default period reported
        shown = reports.PeriodForm({})
        shown.is_valid()
        return form, shown.period_in(time_zone)
    return form, form.period_in(time_zone)


def _report_context(report: reports.Report) -> dict[str, Any]:
    return {
        "report": report,
        "charts": reports.charts(report),
        "failures": [
            (status, report.totals[name], report.reasons.get(status, []))
            for status, name in FAILURE_FIELDS.items()
        ],
        "time_zone": report.period.time_zone.key,
    }


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """The dashboard of the admin index: the organization's counts and its messages' for the period."""
    organization = organization_of(request)
    organizations = None
    if organization is None:  # a superuser: every organization, or the one picked
        organizations = Organization.objects.order_by("slug")
        picked = request.GET.get("organization", "")
        organization = organizations.filter(slug=picked).first() if picked else None
    rows = HourlyRollup.objects.all()
    if organization is not None:
        rows = rows.filter(organization=organization)
    form, period = _period(request, organization)
    report = reports.build(rows, period)
    lines = reports.breakdown(rows, period, "configuration")
    configurations = EventConfiguration.objects.filter(pk__in=[line["configuration"] for line in lines])
    known = {c.pk: c for c in configurations}
    report.breakdown = [
        {
            **line,
            "event_id": known[line["configuration"]].event_id,
            "report_url": reverse("message-report", args=[known[line["configuration"]].message_id])
            if known[line["configuration"]].message_id
            else "",
        }
        for line in lines
    ]
    return {
        "dashboard": True,
        "period_form": form,
        "organizations": organizations,
        "organization": organization,
        **_report_context(report),
    }


def install_dashboard(site: AdminSite) -> None:
    """The admin index opens on the dashboard (both roles), above the usual list of pages."""
    original = site.index

    def index(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        return original(request, {**dashboard_context(request), **(extra_context or {})})

    site.index = index  # type: ignore[method-assign]  # the site's URLs wrap whatever `index` is
    site.index_template = "admin/reports/index.html"


def message_report(request: HttpRequest, pk: int) -> HttpResponse:
    """A message's report: all its versions, or the one chosen (`?version=N`), with hot clicks."""
    organization = organization_of(request)
    messages = TransactionalMessage.objects.select_related("configuration__organization")
    if organization is not None:
        messages = messages.filter(configuration__organization=organization)
    message = get_object_or_404(messages, pk=pk)
    if not request.user.has_perm("transactional.view_transactionalmessage"):
        raise Http404
    configuration = message.configuration
    versions = list(MessageVersion.objects.filter(message=message).order_by("-number"))
    version = None
    if request.GET.get("version"):
        version = next((v for v in versions if str(v.number) == request.GET["version"]), None)
        if version is None:
            raise Http404("This message has no such version.")
    rows = HourlyRollup.objects.filter(configuration=configuration)
    if version is not None:
        rows = rows.filter(version=version)
    form, period = _period(request, configuration.organization)
    report = reports.build(rows, period)
    numbers = {v.pk: v.number for v in versions}
    report.breakdown = [
        {**line, "number": numbers.get(line["version"])}
        for line in reports.breakdown(rows, period, "version")
    ]
    context = {
        **admin.site.each_context(request),
        "title": f"Report: {configuration.event_id}" + (f" v{version.number}" if version else ""),
        "message": message,
        "configuration": configuration,
        "version": version,
        "versions": versions,
        "period_form": form,
        "hot_clicks": reports.hot_clicks([version.pk] if version else list(numbers), period),
        "opts": TransactionalMessage._meta,
        **_report_context(report),
    }
    return TemplateResponse(request, "admin/reports/message.html", context)
