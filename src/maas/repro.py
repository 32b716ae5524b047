"""Run a stage the way `dvc repro` does, for the callers that aren't DVC (the Prefect flow, `maas stage`).

dvc.lock is the one record of what each stage last produced from which inputs:
a stage whose deps' hashes, params and code still match its dvc.lock entry (and
whose outputs are still there) is skipped; otherwise it runs and its outputs are
recorded in dvc.lock and DVC's cache, exactly as `dvc repro` would record them.
So after a flow run `dvc status` is clean, and after `dvc repro` the flow has
nothing to do: both runners read and write the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from maas.errors import MaasError
from maas.stages import Stage


class DvcError(MaasError):
    """DVC could not read or write its record (dvc.lock, the cache)."""


@dataclass
class Outcome:
    summary: dict
    cached: bool
    reasons: list[str] = field(default_factory=list)  # why it ran: what changed since dvc.lock


class Lock:
    """The project's dvc.lock, read and written through DVC's own API."""

    def __init__(self, root: Path):
        from dvc.repo import Repo

        self.repo = Repo(str(root))

    @classmethod
    def open(cls, root: Path) -> Lock | None:
        """None when `root` is not a DVC project: then nothing is skipped or recorded."""
        return cls(root) if (root / ".dvc").is_dir() else None

    def changes(self, stage: str) -> list[str]:
        """What differs from the stage's dvc.lock entry, one line each; [] when it is up to date."""
        try:
            status = self.repo.status(targets=[stage])
        except Exception as e:  # DVC's errors share no base class worth naming here
            raise DvcError(f"dvc status {stage} failed: {e}") from e
        return [_describe(item) for item in status.get(stage, [])]

    def record(self, stage: str) -> None:
        """What `dvc repro` does after running a stage: hash its deps and outs, cache the outs,
        write its dvc.lock entry."""
        try:
            self.repo.commit(stage, force=True)
        except Exception as e:
            raise DvcError(f"recording {stage}'s outputs in dvc.lock failed: {e}") from e


def _describe(item) -> str:
    if isinstance(item, str):  # e.g. "always changed"
        return item
    parts = []
    for kind, files in item.items():  # {"changed deps": {"params.yaml": {"model.channels": "modified"}}}
        for name, what in files.items():
            detail = ", ".join(f"{k} {v}" for k, v in what.items()) if isinstance(what, dict) else what
            parts.append(f"{kind}: {name} ({detail})")
    return "; ".join(parts)


def run_stage(stage: Stage, cfg: DictConfig, lock: Lock | None, force: bool = False,
              call: Callable[[DictConfig], dict] | None = None) -> Outcome:
    """Skip `stage` if dvc.lock says it is up to date (unless `force`), else run it and record it.

    `cfg` must be params.yaml's config on the tracked paths (see run_config): that is what
    dvc.lock records. `call` runs the stage (default: `stage.run`).
    """
    reasons = lock.changes(stage.name) if lock else []  # no lock: a one-off run, or not a DVC project
    if lock and not reasons and not force:
        print(f"[maas] stage {stage.name}: up to date with dvc.lock, skipped", flush=True)
        return Outcome({"stage": stage.name, "cached": True}, cached=True)
    if lock and reasons:
        print(f"[maas] stage {stage.name}: {'; '.join(reasons)}", flush=True)
    summary = (call or stage.run)(cfg)
    if lock:
        lock.record(stage.name)
    return Outcome(summary, cached=False, reasons=reasons)
