"""``reranktune``: run any stage by hand, outside DVC, with the pipeline's paths.

Each subcommand reads its section of ``params.yaml`` (``--params``) and writes
the same files the DVC stage declares, so a GPU box without DVC runs the same
pipeline with ``reranktune sdg && reranktune prep && ...``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable

from reranktune.deploy.health import DeployError
from reranktune.io import InputError
from reranktune.logs import setup_logging

STAGES = ("sdg", "prep", "finetune", "eval", "export")
EVAL_OVERRIDES = ("endpoint_url", "data_path", "questions_dir", "first_stage")


def _stage_runner(name: str) -> Callable[[argparse.Namespace], object]:
    def run(args: argparse.Namespace) -> object:
        from reranktune import stages

        overrides = {key: value for key in EVAL_OVERRIDES if (value := getattr(args, key, None)) is not None}
        return getattr(stages, name)(args.params, **overrides)

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
        "sdg": "documents (sdg.input_path: a folder of text files or a corpus.jsonl) -> synthetic Q&A in data/sdg/qa.jsonl",
        "prep": "Q&A -> training file with hard negatives + BEIR test set in data/prep/",
        "finetune": "train the cross-encoder (with finetune.prior weights > 0: as a correction to the first "
        "stage's dense and BM25 scores, saved with it in prior/) -> models/reranker/",
        "eval": "every first stage vs the reranker, on real questions (eval.questions_dir) and prep's synthetic "
        "split (eval.data_path) -> metrics/eval.json, eval_details.json, eval_report.md",
        "export": "ONNX variants (fp32, optimized, int8, fp16) behind an accuracy gate -> models/onnx/",
    }
    for name in STAGES:
        stage = sub.add_parser(name, help=helps[name], description=helps[name])
        stage.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if name == "eval":
            stage.add_argument("--endpoint-url", help="check a running /v1/ranking API against the "
                               "checkpoint (overrides eval.endpoint_url)")
            stage.add_argument("--data-path", help="BEIR folder of synthetic questions (overrides eval.data_path)")
            stage.add_argument("--questions-dir", help="folder of BEIR folders of real questions over the same "
                               "documents, one eval section each (overrides eval.questions_dir)")
            stage.add_argument("--first-stage", choices=["dense", "bm25", "hybrid"],
                               help="candidates to rerank (overrides retrieval.first_stage)")
        stage.set_defaults(func=_stage_runner(name))
    from reranktune.deploy.cli import add_deploy_parser, add_serve_parser

    add_serve_parser(sub)
    add_deploy_parser(sub)
    compare = sub.add_parser(
        "compare", help="paired randomisation test between two runs' metrics/eval_per_query.tsv",
        description="Compare two eval runs query by query (e.g. before and after a params change).")
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--system", default="finetuned", help="system to compare, as test_set/system (e.g. synthetic/hybrid); "
                         "a bare name takes the first test set's (default: finetuned)")
    compare.add_argument("--measure", default="NDCG@10", help="per-query measure (default: NDCG@10)")
    compare.set_defaults(func=_run_compare)
    preset = sub.add_parser(
        "preset",
        help="run a DVC experiment with a params preset (e.g. params/gpu-reference.yaml)",
        description="Check a preset against params.yaml, then run `dvc exp run -S key=value ... "
        "[DVC_ARGS]` so DVC applies it to params.yaml and records the experiment. "
        "Options after FILE go to `dvc exp run` (e.g. --queue, -n NAME).",
    )
    preset.add_argument("--print", action="store_true", dest="print_only",
                        help="print the dvc command instead of running it")
    preset.add_argument("file", help="preset YAML: params.yaml's shape, only the keys it changes")
    preset.add_argument("dvc_args", nargs=argparse.REMAINDER, help="more `dvc exp run` options")
    preset.set_defaults(func=_run_preset)
    return parser


def _run_compare(args: argparse.Namespace) -> None:
    from reranktune.evaluation.compare import compare_files

    print(json.dumps(compare_files(args.old, args.new, args.system, args.measure), indent=2))


def _run_preset(args: argparse.Namespace) -> None:
    from reranktune.presets import check_preset, load_preset, set_args

    values = load_preset(args.file)
    check_preset(values, args.file, "params.yaml")
    command = ["dvc", "exp", "run", *set_args(values), *args.dvc_args]
    if args.print_only:
        print(shlex.join(command))
    elif code := subprocess.call(command):
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup_logging()
        args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
