"""DVC stage 'prep': runs reranktune.stages.prep (its files are there);
`reranktune prep --help` for its options."""

import sys

from reranktune import stages
from reranktune.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stages.prep, prog="stages/prep.py"))
