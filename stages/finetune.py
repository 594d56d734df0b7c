"""DVC stage 'finetune': runs reranktune.stages.finetune (its files are there);
`reranktune finetune --help` for its options."""

import sys

from reranktune import stages
from reranktune.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stages.finetune, prog="stages/finetune.py"))
