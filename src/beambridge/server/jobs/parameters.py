"""Checking a job's parameters and transfers against its app's declarations."""

from __future__ import annotations

from typing import Any

from beambridge.schemas.apps import AppParameter, TransferDirection, TransferSlot
from beambridge.schemas.jobs import TransferValue, transfer_ref, transfer_sha256


def resolve_parameters(
    app_name: str, declared: dict[str, AppParameter], given: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The job's parameters with defaults filled in, and the problems found (empty when valid)."""
    problems = [
        f"unknown parameter {name!r} for app {app_name!r} (it takes: {', '.join(sorted(declared)) or 'none'})"
        for name in given
        if name not in declared
    ]
    resolved = dict(given)
    for name, spec in declared.items():
        if name not in given:
            if spec.required:
                problems.append(f"app {app_name!r} requires parameter {name!r}")
            else:
                resolved[name] = spec.default
            continue
        value = given[name]
        if not spec.type.accepts(value):
            problems.append(f"parameter {name!r} must be {spec.type.value}, got {type(value).__name__}")
    return resolved, problems


def check_transfers(
    app_name: str, slots: dict[str, TransferSlot], given: dict[str, TransferValue]
) -> tuple[bool, bool, list[str]]:
    """Whether the job stages data in / out, and the problems found with its transfers."""
    if not slots and not given:
        return False, False, []
    problems = [
        f"unknown transfer slot {name!r} for app {app_name!r} (it has: {', '.join(sorted(slots)) or 'none'})"
        for name in given
        if name not in slots
    ]
    problems += [
        f"app {app_name!r} requires transfer slot {name!r}"
        for name, slot in slots.items()
        if slot.required and name not in given
    ]
    for name, value in given.items():
        slot = slots.get(name)
        if slot is None or transfer_sha256(value) is None:
            continue
        if slot.direction is TransferDirection.OUT:
            problems.append(
                f"transfer {name!r}: a sha256 is declared for inputs only ({name!r} is an output)"
            )
        elif slot.recursive:
            problems.append(
                f"transfer {name!r}: a sha256 is declared for files only ({name!r} is a directory)"
            )
    has_in = any(slots[name].direction is TransferDirection.IN for name in given if name in slots)
    has_out = any(slots[name].direction is TransferDirection.OUT for name in given if name in slots)
    return has_in, has_out, problems


def check_locations(site: tuple[str, dict[str, str]], given: dict[str, TransferValue]) -> list[str]:
    """Problems with the location aliases a job's transfers name (the site registers its aliases)."""
    name, locations = site
    known = ", ".join(sorted(locations)) or "none registered yet: start its agent with locations in site.yml"
    aliases = {slot: transfer_ref(value).partition(":")[0] for slot, value in given.items()}
    return [
        f"transfer {slot!r}: site {name!r} has no location {alias!r} (it has: {known})"
        for slot, alias in aliases.items()
        if alias not in locations
    ]
