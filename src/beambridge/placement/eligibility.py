"""Which sites could ever run a job, and why the others cannot.

A site is *eligible* for a job when it registered the job's app (by name) with parameters that accept
the job's parameters and transfer slots that match the job's transfers, and it has every location alias
the transfers name. These are lasting facts about the site's configuration: a job no site is eligible
for is refused at submission, naming each site's reason. Whether an eligible site takes work *now*
(health, backlog cap, capacity) is decided per placement, in :mod:`~beambridge.placement.placer`.

The wording matches the service's own checks of a job against one app, so a user sees the same sentence
whichever way the job was submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beambridge.placement.snapshot import AppSpec, JobRequest, SiteSnapshot, Snapshot
from beambridge.schemas.apps import TransferSlot


def location_of(transfer: str) -> str:
    """The location alias of ``'location:/path'`` (or of a bare alias)."""
    return transfer.partition(":")[0]


def parameter_problems(app: AppSpec, given: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``given`` parameters for ``app`` (empty when they are accepted)."""
    declared = app.parameters
    if not declared and not given:
        return []
    problems = [
        f"unknown parameter {name!r} for app {app.name!r} (it takes: {', '.join(sorted(declared)) or 'none'})"
        for name in given
        if name not in declared
    ]
    for name, spec in declared.items():
        if name not in given:
            if spec.required:
                problems.append(f"app {app.name!r} requires parameter {name!r}")
        elif not spec.type.accepts(given[name]):
            problems.append(f"parameter {name!r} must be {spec.type.value}, got {type(given[name]).__name__}")
    return problems


def transfer_problems(app: AppSpec, given: Mapping[str, str]) -> list[str]:
    """What is wrong with the job's transfer slots for ``app``."""
    slots: Mapping[str, TransferSlot] = app.transfer_slots
    if all(name in slots for name in given) and all(
        name in given or not slot.required for name, slot in slots.items()
    ):
        return []
    problems = [
        f"unknown transfer slot {name!r} for app {app.name!r} (it has: {', '.join(sorted(slots)) or 'none'})"
        for name in given
        if name not in slots
    ]
    problems += [
        f"app {app.name!r} requires transfer slot {name!r}"
        for name, slot in slots.items()
        if slot.required and name not in given
    ]
    return problems


def location_problems(site: SiteSnapshot, given: Mapping[str, str]) -> list[str]:
    """Location aliases the job's transfers name that the site has not registered."""
    if all(location_of(value) in site.locations for value in given.values()):
        return []
    known = (
        ", ".join(sorted(site.locations)) or "none registered yet: start its agent with locations in site.yml"
    )
    return [
        f"transfer {slot!r}: site {site.name!r} has no location {location_of(value)!r} (it has: {known})"
        for slot, value in given.items()
        if location_of(value) not in site.locations
    ]


def ineligibility(job: JobRequest, site: SiteSnapshot) -> list[str]:
    """Why ``site`` can never run ``job`` (empty: it is eligible)."""
    app = site.apps.get(job.app)
    if app is None:
        registered = ", ".join(sorted(site.apps)) or "none"
        return [f"app {job.app!r} is not registered at site {site.name!r} (it has: {registered})"]
    return [
        *parameter_problems(app, job.parameters),
        *transfer_problems(app, job.transfers),
        *location_problems(site, job.transfers),
    ]


def job_sites(job: JobRequest, snapshot: Snapshot) -> tuple[list[SiteSnapshot], dict[str, list[str]]]:
    """The snapshot's sites the job names (all of them if it names none), and the reason for each named
    site the snapshot does not know."""
    if not job.sites:
        return list(snapshot.sites), {}
    known: list[SiteSnapshot] = []
    unknown: dict[str, list[str]] = {}
    for name in dict.fromkeys(job.sites):
        site = snapshot.by_name.get(name)
        if site is None:
            unknown[name] = [f"no site named {name!r}"]
        else:
            known.append(site)
    return known, unknown


def eligibility(job: JobRequest, snapshot: Snapshot) -> dict[str, list[str]]:
    """For each site the job names (or every site), why it is ineligible — an empty list when eligible.

    The service refuses a job whose every entry is non-empty, with these reasons.
    """
    sites, reasons = job_sites(job, snapshot)
    for site in sites:
        reasons[site.name] = ineligibility(job, site)
    return reasons


def shape_key(job: JobRequest) -> tuple[Any, ...]:
    """What eligibility depends on: the app, the parameters' names and JSON types, the transfers' slots and
    locations. Jobs of one shape are eligible at the same sites (bulk placement checks each shape once)."""
    return (
        job.app,
        tuple(sorted((name, type(value).__name__) for name, value in job.parameters.items())),
        tuple(sorted((slot, location_of(value)) for slot, value in job.transfers.items())),
    )
