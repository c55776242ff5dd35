"""Workflows as data and idempotent submissions: what a beamline sends when a dataset is complete.

A **workflow** (a YAML file at the beamline, stored by name in the service) is the DAG of jobs to run for
each dataset: its steps name an app (and the site it lives on), parameters that may be Jinja2 templates
over the dataset (file name, metadata, the run's documents), a priority, the steps it runs after, whether
it is the quick look, and whether it runs only when the change detector saw something new.

A **submission** is one dataset going through one workflow. It carries an idempotency key (a run uid, or
path + size + mtime + SHA-256); the service keeps the key unique per user and answers a repeat with the
jobs it already made, so a watcher killed and restarted at any moment never submits a dataset twice.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, JsonValue, field_validator, model_validator

from beambridge.schemas.common import InputModel, Name, OutputModel, Tags, UtcDatetime
from beambridge.schemas.freejson import check_free_json

MAX_STEPS = 64
MAX_CONTEXT_BYTES = 256 * 1024


def _check_key(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not hold control characters")
    return value


IdempotencyKey = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_check_key)]


def _check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not hold a NUL character")
    return value


Text = Annotated[str, AfterValidator(_check_text)]


def _bounded(value: Any) -> Any:
    import orjson

    if len(orjson.dumps(value)) > MAX_CONTEXT_BYTES:
        raise ValueError(f"is larger than {MAX_CONTEXT_BYTES} bytes as JSON")
    return value


FreeJson = Annotated[dict[str, JsonValue], BeforeValidator(check_free_json), AfterValidator(_bounded)]
"""Free-form JSON (template context, event data): bounded and storable by SQLite and PostgreSQL alike."""


def _check_pattern(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"is not a valid regular expression: {err}") from None
    return value


class WorkflowStep(InputModel):
    """One step of a workflow: one job per dataset."""

    name: Name
    app: Name = Field(description="The app's name")
    site: Name | None = Field(
        default=None, description="The site the app lives on (needed when several sites have the app)"
    )
    sites: list[Name] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Let the service place the job on whichever of these sites finishes it soonest",
    )
    site_group: Name | None = Field(default=None, description="Place the job on a site of this group")
    parameters: FreeJson = Field(
        default_factory=dict,
        description="Parameters; strings may be Jinja2 templates over the dataset ('{{ file.stem }}')",
    )
    workdir: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        default="{{ workflow }}/{{ file.stem }}/{{ step }}", description="Jinja2 template of the workdir"
    )
    transfers: dict[str, Text] = Field(
        default_factory=dict, description="Slot → 'location:/path' (templates allowed)"
    )
    after: list[Name] = Field(default_factory=list, description="Steps that must finish first")
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    quick_look: bool = Field(default=False, description="The step whose result is the first feedback")
    skip_unless_changed: bool = Field(
        default=False,
        description="Held until the change detector has looked at the quick look; skipped if nothing changed",
    )
    tags: Tags = Field(default_factory=dict)
    num_nodes: int = Field(default=1, ge=1, le=100_000)
    ranks_per_node: int = Field(default=1, ge=1, le=4096)
    threads_per_rank: int = Field(default=1, ge=1, le=4096)
    wall_time_limit_min: float = Field(default=0, ge=0, le=60 * 24 * 30, description="0 means no limit")
    retry_limit: int = Field(default=3, ge=0, le=1000)


class ChangeDetection(InputModel):
    """Which features of the quick look's result the change detector follows, and how sensitive it is."""

    features: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["mean_intensity", "contrast", "fit.D"],
        max_length=32,
        description="Dotted paths into the quick look's result",
    )
    method: str = Field(default="page_hinkley", pattern="^(page_hinkley|bocpd)$")
    threshold: float = Field(default=8.0, gt=0, le=1e6, description="Page-Hinkley λ, in noise σ")
    hazard: float = Field(default=1 / 250, gt=0, lt=1, description="BOCPD's prior change rate per dataset")
    warmup: int = Field(default=5, ge=2, le=10_000, description="Datasets that set the baseline")


class Workflow(InputModel):
    """A workflow file: the DAG of steps each dataset goes through."""

    name: Name
    description: Text = Field(default="", max_length=10_000)
    filename_pattern: str | None = Field(
        default=None,
        max_length=1000,
        description="Regex with named groups over the file name; the groups become 'fields' in templates",
    )
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)
    change_detection: ChangeDetection | None = None

    _pattern = field_validator("filename_pattern")(_check_pattern)

    @model_validator(mode="after")
    def _check_dag(self) -> Workflow:
        seen: set[str] = set()
        for step in self.steps:
            if sum(x is not None for x in (step.site, step.sites, step.site_group)) > 1:
                raise ValueError(f"step {step.name!r}: give one of site, sites or site_group")
            if step.name in seen:
                raise ValueError(f"step {step.name!r} appears twice")
            for parent in step.after:
                if parent not in seen:
                    raise ValueError(
                        f"step {step.name!r} runs after {parent!r}, which is not an earlier step "
                        "(list steps in the order they run)"
                    )
            seen.add(step.name)
        quick = [step.name for step in self.steps if step.quick_look]
        if len(quick) > 1:
            raise ValueError(f"only one step may be the quick look (found {', '.join(quick)})")
        if any(step.skip_unless_changed for step in self.steps) and self.change_detection is None:
            raise ValueError("a step is skip_unless_changed: the workflow needs a change_detection section")
        if any(step.skip_unless_changed and step.quick_look for step in self.steps):
            raise ValueError("the quick look cannot be skip_unless_changed: it feeds the change detector")
        return self

    def step(self, name: str) -> WorkflowStep:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


class WorkflowOut(OutputModel):
    """A stored workflow."""

    id: int
    name: str
    spec: Workflow
    created_at: UtcDatetime
    updated_at: UtcDatetime


class SubmissionSource(StrEnum):
    """What noticed the dataset."""

    WATCHER = "watcher"
    BLUESKY = "bluesky"
    HTTP = "http"
    SDK = "sdk"


class SubmissionCreate(InputModel):
    """A complete dataset, to go through a stored workflow exactly once."""

    workflow: Name
    key: IdempotencyKey = Field(description="Unique per user: a repeat answers with the existing jobs")
    dataset: Annotated[Text, Field(min_length=1, max_length=2048)] = Field(
        description="The dataset's path (or name) at the beamline"
    )
    source: SubmissionSource = SubmissionSource.SDK
    context: FreeJson = Field(
        default_factory=dict,
        description="Template variables: 'metadata', 'run' (start document), 'stop' (stop document)…",
    )
    closed_at: UtcDatetime | None = Field(
        default=None,
        description=(
            "When the file closed (or the run stopped): the start of the latency clock. A dataset submitted "
            "while still being written is sent again with the same key and this, once it closes"
        ),
    )


class StepStatus(StrEnum):
    """Where one step of a submission stands."""

    SUBMITTED = "submitted"  # its job exists
    HELD = "held"  # waits for the change detector (or for a held step it runs after)
    SKIPPED = "skipped"  # the detector saw no change (reversible: run it)


class SubmissionStep(OutputModel):
    """One step of one submission."""

    status: StepStatus
    job_id: int | None = None
    app: str
    after: list[str]
    quick_look: bool = False
    reason: str = ""


class Submission(OutputModel):
    """One dataset through one workflow, with the latency from file closed to first and full result."""

    id: int
    workflow: str
    key: str
    dataset: str
    source: SubmissionSource
    context: dict[str, JsonValue]
    steps: dict[str, SubmissionStep]
    job_ids: list[int]
    closed_at: UtcDatetime | None
    created_at: UtcDatetime
    first_result_at: UtcDatetime | None = Field(
        default=None, description="When the quick look (or the first step) finished"
    )
    full_result_at: UtcDatetime | None = Field(
        default=None, description="When every step that runs had finished"
    )
    first_result_s: float | None = Field(default=None, description="Seconds from closed to first result")
    full_result_s: float | None = Field(default=None, description="Seconds from closed to full result")


class SubmissionAnswer(OutputModel):
    """The answer to a submission: ``created`` is false when the key was seen before."""

    created: bool
    submission: Submission


class StepAction(StrEnum):
    """What to do with a held or skipped step."""

    RUN = "run"
    SKIP = "skip"


class StepDecision(InputModel):
    """Run or skip a held step (a skipped step may be run later: skips are reversible)."""

    action: StepAction
    reason: Annotated[Text, Field(max_length=2000)] = ""


class BeamlineEventCreate(InputModel):
    """Something that happened at the beamline: a run aborted, a change detected, an alert sent."""

    kind: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")]
    dataset: Annotated[Text, Field(max_length=2048)] = ""
    workflow: Annotated[Text, Field(max_length=100)] = ""
    submission_id: int | None = Field(default=None, ge=1, le=2**62)
    data: FreeJson = Field(default_factory=dict)


class BeamlineEvent(OutputModel):
    """A recorded beamline event."""

    id: int
    kind: str
    dataset: str
    workflow: str
    submission_id: int | None
    data: dict[str, JsonValue]
    timestamp: UtcDatetime
