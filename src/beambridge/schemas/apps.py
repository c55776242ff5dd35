"""Apps: the metadata of an application a site can run (never its code)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from beambridge.schemas.common import InputModel, Name, OutputModel, PositiveId, UtcDatetime
from beambridge.schemas.freejson import FreeJson, free_json_field


class ParameterType(StrEnum):
    """The JSON type a job parameter must have."""

    ANY = "any"
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    LIST = "list"
    DICT = "dict"

    def accepts(self, value: object) -> bool:
        """Whether a JSON value has this type (``true`` is not a number; an int is a float)."""
        expected = _PYTHON_TYPES.get(self)
        if expected is None:
            return True
        if isinstance(value, bool) and self in (ParameterType.INT, ParameterType.FLOAT):
            return False
        return isinstance(value, expected)


_PYTHON_TYPES: dict[ParameterType, tuple[type, ...]] = {
    ParameterType.STR: (str,),
    ParameterType.INT: (int,),
    ParameterType.FLOAT: (int, float),
    ParameterType.BOOL: (bool,),
    ParameterType.LIST: (list,),
    ParameterType.DICT: (dict,),
}


class AppParameter(InputModel):
    """One parameter of an app."""

    required: bool = True
    default: FreeJson = free_json_field("The value a job gets when it does not give one.", default=None)
    type: ParameterType = ParameterType.ANY
    help: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _default_has_the_type(self) -> AppParameter:
        if self.default is not None and not self.type.accepts(self.default):
            raise ValueError(f"default {self.default!r:.60} is not of the parameter's type {self.type.value}")
        return self


class TransferDirection(StrEnum):
    """Whether a transfer slot brings data in before the run or takes results out after it."""

    IN = "in"
    OUT = "out"


class TransferSlot(InputModel):
    """A named place in a job's workdir that a transfer fills (in) or empties (out)."""

    direction: TransferDirection
    local_path: str = Field(
        min_length=1, max_length=1024, description="Relative path inside the job's workdir (no '..')"
    )
    required: bool = True
    recursive: bool = Field(default=False, description="A directory rather than a file")
    description: str = Field(default="", max_length=2000)


def local_path_problem(path: str) -> str | None:
    """Why a slot's ``local_path`` could reach outside the job's workdir, or None if it cannot."""
    if "\x00" in path or "\\" in path:
        return "may not contain NUL bytes or backslashes"
    if path.startswith("/"):
        return "must be relative to the job's workdir, not absolute"
    if ".." in path.split("/"):
        return "may not contain '..' (it must stay inside the job's workdir)"
    if not [part for part in path.split("/") if part not in ("", ".")]:
        return "names no file"
    return None


def _check_slots(slots: dict[str, TransferSlot] | None) -> dict[str, TransferSlot] | None:
    for name, slot in (slots or {}).items():
        problem = local_path_problem(slot.local_path)
        if problem:
            raise ValueError(f"slot {name!r}: local_path {slot.local_path!r:.80} {problem}")
    return slots


class AppHook(StrEnum):
    """Hooks an app may override; for the others the service applies the default at once."""

    PREPROCESS = "preprocess"
    POSTPROCESS = "postprocess"
    HANDLE_ERROR = "handle_error"
    HANDLE_TIMEOUT = "handle_timeout"


AppVersion = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:+-]{1,64}$",
        description="Which copy of the app's code: the site agent sends a digest of the app's file",
    ),
]
"""A version of an app's code (1-64 letters, digits and ``._:+-``)."""


class AppCreate(InputModel):
    """Register an app on a site."""

    site_id: PositiveId
    name: Name
    version: AppVersion | None = Field(
        default=None,
        description=(
            "Which copy of the app's code the site registered (the agent sends a digest of its file). "
            "A launcher that says it has another copy is not handed the app's jobs; null: any copy."
        ),
    )
    description: str = Field(default="", max_length=10_000)
    parameters: dict[str, AppParameter] = Field(default_factory=dict, max_length=200)
    transfer_slots: Annotated[
        dict[str, TransferSlot], Field(default_factory=dict, max_length=100), AfterValidator(_check_slots)
    ]
    hooks: list[AppHook] = Field(
        default_factory=list,
        description=(
            "Hooks the app overrides. Without preprocess a STAGED_IN job becomes PREPROCESSED at once; "
            "without postprocess RUN_DONE becomes POSTPROCESSED; without handle_error RUN_ERROR becomes "
            "FAILED; without handle_timeout RUN_TIMEOUT becomes RESTART_READY until the retry limit."
        ),
    )
    retry_on_error: bool = Field(
        default=True,
        description=(
            "Whether a failed run (RUN_ERROR) is run again until the job's retry_limit, as a timed-out run "
            "is; false fails it at once. Applies when the app has no handle_error hook."
        ),
    )


class AppUpdate(InputModel):
    """Change an app's metadata (the site re-registers its apps on start)."""

    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, AppParameter] | None = Field(default=None, max_length=200)
    transfer_slots: Annotated[
        dict[str, TransferSlot] | None, Field(default=None, max_length=100), AfterValidator(_check_slots)
    ]
    hooks: list[AppHook] | None = None
    retry_on_error: bool | None = None
    version: AppVersion | None = None


class App(OutputModel):
    """An app as the service sees it."""

    id: int
    site_id: int
    name: str
    version: str | None = None
    description: str
    parameters: dict[str, AppParameter]
    transfer_slots: dict[str, TransferSlot]
    hooks: list[AppHook]
    retry_on_error: bool = True
    created_at: UtcDatetime
