"""The verified data mover: manifest first, batches copied in parallel, xxh3_128 on every file.

Plain Python (no Prefect): flows call it batch by batch, the CLI calls `run_copy`.
"""

from storage.mover.batch import copy_batch
from storage.mover.finish import finish_copy
from storage.mover.plan import default_job_id, pending_batches, plan_copy
from storage.mover.progress import job_progress
from storage.mover.results import BatchResult, CopySummary, FinishSummary, PlanSummary, Progress
from storage.mover.run import run_copy

__all__ = [
    "BatchResult",
    "CopySummary",
    "FinishSummary",
    "PlanSummary",
    "Progress",
    "copy_batch",
    "default_job_id",
    "finish_copy",
    "job_progress",
    "pending_batches",
    "plan_copy",
    "run_copy",
]
