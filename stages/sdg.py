"""DVC stage 'sdg': runs reranktune.stages.sdg (its files are there);
`reranktune sdg --help` for its options."""

import sys

from reranktune import stages
from reranktune.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stages.sdg, prog="stages/sdg.py"))
