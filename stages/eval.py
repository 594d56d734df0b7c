"""DVC stage 'eval': runs reranktune.stages.eval (its files are there);
`reranktune eval --help` for its options."""

import sys

from reranktune import stages
from reranktune.stage_cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stages.eval, prog="stages/eval.py"))
