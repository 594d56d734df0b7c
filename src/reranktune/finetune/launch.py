"""Multi-process training: the stage re-launches itself under torchrun when nproc > 1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def relaunch_with_torchrun(nproc: int, cli_args: list[str]) -> None:
    """Run stage ``cli_args`` (e.g. ``finetune --params params.yaml``) in ``nproc`` processes
    (NCCL on GPUs, gloo on CPU), through the stage entry that stages/*.py use, not the whole CLI."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "reranktune.stage_cli",
        *cli_args,
    ]
    log.info("launching %d training processes: %s", nproc, " ".join(command))
    subprocess.run(command, check=True)
