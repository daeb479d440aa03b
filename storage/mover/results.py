"""What the mover reports: plan, batch, finish and whole-copy summaries, and progress."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PlanSummary(BaseModel):
    job_id: str
    generation: int
    entries: int
    files: int
    bytes: int
    batches_pending: int
    files_to_copy: int
    bytes_to_copy: int
    vanished: int = 0
    """Entries of an earlier plan that are gone from the source (removed by `finish_copy`)."""
    vanished_while_walking: int = 0
    """Entries (or whole directories) that disappeared between being listed and read."""
    vanished_paths: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class BatchResult(BaseModel):
    job_id: str
    batch: int
    files_copied: int = 0
    bytes_copied: int = 0
    files_already_verified: int = 0
    """Entries of the batch a previous attempt had already verified (not copied again)."""
    entries_done: int = 0
    recopies: int = 0
    """Files copied again because the destination did not verify at first."""
    skipped: int = 0
    changed: int = 0
    """Source files that changed or vanished while being copied; the next plan re-queues them."""
    failed: list[str] = Field(default_factory=list)
    not_preserved: dict[str, int] = Field(default_factory=dict)
    """What the destination could not hold, by class (mode, mtime, owner, xattr, symlink, ...)."""

    def merge_not_preserved(self, other: dict[str, int]) -> None:
        for key, count in other.items():
            self.not_preserved[key] = self.not_preserved.get(key, 0) + count


class FinishSummary(BaseModel):
    job_id: str
    dirs_updated: int = 0
    hardlinks: int = 0
    removed: int = 0
    complete: bool = False
    """True when every entry of the current plan is verified, done or skipped."""


class Progress(BaseModel):
    job_id: str
    state: str
    files_planned: int = 0
    bytes_planned: int = 0
    files_verified: int = 0
    bytes_verified: int = 0
    entries_planned: int = 0
    entries_done: int = 0
    skipped: int = 0
    failed: int = 0
    percent: int = 0
    """0-100, from verified bytes and finished entries; 100 only once `finish_copy` completed."""
    current_path: str | None = None


class CopySummary(BaseModel):
    job_id: str
    source_url: str
    dest_url: str
    files: int = 0
    bytes: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_verified: int = 0
    bytes_verified: int = 0
    files_already_verified: int = 0
    recopies: int = 0
    skipped: int = 0
    changed: int = 0
    removed: int = 0
    repaired: int = 0
    """Files verified by an earlier run but since removed or altered at the destination."""
    failed: list[str] = Field(default_factory=list)
    not_preserved: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False

    @property
    def throughput_bps(self) -> float:
        return self.bytes_copied / self.seconds if self.seconds > 0 else 0.0
