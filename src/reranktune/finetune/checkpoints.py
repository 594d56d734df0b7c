"""Checkpoints a kill cannot poison.

The Trainer writes a checkpoint's files one by one into ``checkpoint-<step>/``; a kill
in between leaves a folder that looks like a checkpoint and cannot be resumed. Once the
Trainer has finished one, ``SealCheckpoints`` writes a seal into it (atomically) listing
its files and their sizes. A checkpoint is complete when its seal is there and every
file it lists has that size; a rerun resumes from the newest complete one and removes
the others, saying so.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from reranktune.io import write_json

log = logging.getLogger(__name__)

SEAL = "reranktune_complete.json"


def _step(folder: Path) -> int:
    suffix = folder.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
    return int(suffix) if suffix.isdigit() else -1


def _checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-<step>`` folders, oldest first."""
    return sorted(
        (p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and _step(p) >= 0),
        key=_step,
    )


def is_complete(checkpoint: Path) -> bool:
    try:
        files = json.loads((checkpoint / SEAL).read_text())["files"]
        return all((checkpoint / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def last_complete(folder: Path) -> Path | None:
    return next((p for p in reversed(_checkpoints(folder)) if is_complete(p)), None)


def discard_incomplete(folder: Path) -> None:
    """Remove the checkpoints a kill left unfinished, one log line each."""
    resume = last_complete(folder)
    for checkpoint in _checkpoints(folder):
        if not is_complete(checkpoint):
            log.warning(
                "%s is incomplete (a run was stopped while saving it): removed; %s",
                checkpoint,
                f"resuming from {resume.name}"
                if resume
                else "no complete checkpoint, training starts over",
            )
            shutil.rmtree(checkpoint)


class SealCheckpoints(TrainerCallback):
    """Seals each checkpoint once the Trainer has written all of it (``on_save`` runs after the
    save)."""

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if args.should_save and checkpoint.is_dir():
            files = {
                str(p.relative_to(checkpoint)): p.stat().st_size
                for p in sorted(checkpoint.rglob("*"))
                if p.is_file() and p.name != SEAL
            }
            write_json(checkpoint / SEAL, {"step": state.global_step, "files": files})
