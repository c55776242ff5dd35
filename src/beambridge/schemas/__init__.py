"""The API contract: pydantic models shared by the server and the SDK, so the two cannot drift."""

from beambridge.schemas.apps import (
    App,
    AppCreate,
    AppHook,
    AppParameter,
    AppUpdate,
    TransferDirection,
    TransferSlot,
)
from beambridge.schemas.auth import (
    LoginRequest,
    RefreshRequest,
    SiteToken,
    SiteTokenCreate,
    SiteTokenCreated,
    TokenPair,
    User,
)
from beambridge.schemas.batch_jobs import BatchJob, BatchJobCreate, BatchJobState, BatchJobUpdate, JobMode
from beambridge.schemas.common import MAX_BULK_SIZE, MAX_PAGE_SIZE, Page
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import (
    BulkResult,
    Job,
    JobBulkUpdate,
    JobCreate,
    JobIds,
    JobRetry,
    JobUpdate,
    RetryResult,
)
from beambridge.schemas.sessions import (
    AcquireRequest,
    Heartbeat,
    JobReport,
    Session,
    SessionCreate,
    SessionReport,
)
from beambridge.schemas.sites import Site, SiteCreate, SiteUpdate
from beambridge.schemas.transfers import TransferItem, TransferItemUpdate, TransferState

__all__ = [
    "MAX_BULK_SIZE",
    "MAX_PAGE_SIZE",
    "AcquireRequest",
    "App",
    "AppCreate",
    "AppHook",
    "AppParameter",
    "AppUpdate",
    "BatchJob",
    "BatchJobCreate",
    "BatchJobState",
    "BatchJobUpdate",
    "BulkResult",
    "Event",
    "Heartbeat",
    "Job",
    "JobBulkUpdate",
    "JobCreate",
    "JobIds",
    "JobMode",
    "JobReport",
    "JobRetry",
    "JobUpdate",
    "LoginRequest",
    "Page",
    "RefreshRequest",
    "RetryResult",
    "Session",
    "SessionCreate",
    "SessionReport",
    "Site",
    "SiteCreate",
    "SiteToken",
    "SiteTokenCreate",
    "SiteTokenCreated",
    "SiteUpdate",
    "TokenPair",
    "TransferDirection",
    "TransferItem",
    "TransferItemUpdate",
    "TransferSlot",
    "TransferState",
    "User",
]
