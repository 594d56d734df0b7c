"""``reranktune``: run any stage by hand, outside DVC, with the pipeline's paths.

Each subcommand reads its section of ``params.yaml`` (``--params``) and writes
the same files the DVC stage declares, so a GPU box without DVC runs the same
pipeline with ``reranktune sdg && reranktune prep && ...``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from reranktune.io import InputError
from reranktune.logs import setup_logging

STAGES = ("sdg", "prep", "finetune", "eval", "export")


def _stage_runner(name: str) -> Callable[[argparse.Namespace], object]:
    def run(args: argparse.Namespace) -> object:
        from reranktune import stages

        return getattr(stages, name)(args.params)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranktune",
        description="Turn a folder of documents into a fine-tuned cross-encoder reranker.",
        epilog="Pipeline order: sdg -> prep -> finetune -> eval -> export. "
        "Under DVC, run `dvc repro` instead; it calls the same code.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "sdg": "documents (sdg.input_dir) -> synthetic Q&A in data/sdg/qa.jsonl",
        "prep": "Q&A -> training file with hard negatives + BEIR test set in data/prep/",
        "finetune": "train the cross-encoder -> models/reranker/",
        "eval": "retrieval vs reranking on data/prep/eval_beir -> metrics/eval.json",
        "export": "ONNX variants (fp32, optimized, int8, fp16) behind an accuracy gate -> models/onnx/",
    }
    for name in STAGES:
        stage = sub.add_parser(name, help=helps[name], description=helps[name])
        stage.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        stage.set_defaults(func=_stage_runner(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
