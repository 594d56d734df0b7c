"""One stage's command line, shared by ``stages/<name>.py`` (what DVC runs) and
``reranktune <name>``.

``run_stage(stages.prep)`` parses ``--params`` (and eval's overrides), sets up logging and
runs the stage; bad input (:class:`~reranktune.io.InputError`) is one ``error: ...`` line
on stderr and exit code 2, with no traceback. This module imports neither the CLI's other
commands nor ``deploy``, so a stage's code deps in dvc.yaml are only the code it runs.

``python -m reranktune.stage_cli <stage> [--params FILE]`` runs a stage too: finetune
relaunches itself that way under torchrun.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from reranktune.io import InputError
from reranktune.logs import setup_logging

STAGES = ("sdg", "prep", "finetune", "eval", "export")
EVAL_OVERRIDES = ("endpoint_url", "data_path", "questions_dir", "first_stage")
HELPS = {
    "sdg": "documents (sdg.input_path: a folder of text files or a corpus.jsonl) -> synthetic "
    "Q&A in data/sdg/qa.jsonl",
    "prep": "Q&A -> training file with hard negatives + BEIR test set in data/prep/",
    "finetune": "train the cross-encoder (with finetune.prior weights > 0: as a correction to "
    "the first stage's dense and BM25 scores, saved with it in prior/) -> models/reranker/",
    "eval": "every first stage vs the reranker, on real questions (eval.questions_dir) and "
    "prep's synthetic split (eval.data_path) -> metrics/eval.json, eval_details.json, "
    "eval_report.md",
    "export": "ONNX variants (fp32, optimized, int8, fp16) behind an accuracy gate -> models/onnx/",
}


def add_stage_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of stage ``name``: ``--params``, and for eval the params it lets the command
    line override."""
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    if name == "eval":
        parser.add_argument(
            "--endpoint-url",
            help="check a running /v1/ranking API against the "
            "checkpoint (overrides eval.endpoint_url)",
        )
        parser.add_argument(
            "--data-path", help="BEIR folder of synthetic questions (overrides eval.data_path)"
        )
        parser.add_argument(
            "--questions-dir",
            help="folder of BEIR folders of real questions over the same "
            "documents, one eval section each (overrides eval.questions_dir)",
        )
        parser.add_argument(
            "--first-stage",
            choices=["dense", "bm25", "hybrid"],
            help="candidates to rerank (overrides retrieval.first_stage)",
        )


def call_stage(stage: Callable[..., object], args: argparse.Namespace) -> object:
    """Run ``stage`` (a function of reranktune.stages) with the params file and overrides in
    ``args``."""
    overrides = {
        key: value for key in EVAL_OVERRIDES if (value := getattr(args, key, None)) is not None
    }
    return stage(args.params, **overrides)


def guarded(work: Callable[[], object]) -> int:
    """Set up logging and run ``work``: 0, or 2 with one ``error:`` line on stderr for bad input."""
    try:
        setup_logging()
        work()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_stage(
    stage: Callable[..., object], argv: Sequence[str] | None = None, prog: str | None = None
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) for ``stage`` and run it; returns the exit
    code."""
    name = stage.__name__
    parser = argparse.ArgumentParser(prog=prog, description=HELPS[name])
    add_stage_arguments(parser, name)
    args = parser.parse_args(argv)
    return guarded(lambda: call_stage(stage, args))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reranktune.stage_cli <stage> [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES:
        print(
            f"usage: python -m reranktune.stage_cli {{{','.join(STAGES)}}} [--params FILE]",
            file=sys.stderr,
        )
        return 2
    from reranktune import stages

    return run_stage(getattr(stages, argv[0]), argv[1:], prog=f"reranktune {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
