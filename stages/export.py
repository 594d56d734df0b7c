"""DVC stage 'export': runs reranktune.stages.export (its files are there);
`reranktune export --help` for its options."""

import sys

from reranktune import stages
from reranktune.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stages.export, prog="stages/export.py"))
