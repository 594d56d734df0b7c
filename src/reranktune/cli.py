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
from collections.abc import Callable
from pathlib import Path

from reranktune.deploy.health import DeployError
from reranktune.stage_cli import HELPS, STAGES, add_stage_arguments, call_stage, guarded


def _stage_runner(name: str) -> Callable[[argparse.Namespace], object]:
    def run(args: argparse.Namespace) -> object:
        from reranktune import stages

        return call_stage(getattr(stages, name), args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranktune",
        description="Turn a folder of documents into a fine-tuned cross-encoder reranker.",
        epilog="Pipeline order: sdg -> prep -> finetune -> eval -> export. "
        "Under DVC, run `dvc repro` instead; it calls the same code.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        stage = sub.add_parser(name, help=HELPS[name], description=HELPS[name])
        add_stage_arguments(stage, name)
        stage.set_defaults(func=_stage_runner(name))
    from reranktune.deploy.cli import add_deploy_parser, add_serve_parser

    add_serve_parser(sub)
    add_deploy_parser(sub)
    compare = sub.add_parser(
        "compare",
        help="paired randomisation test between two runs' metrics/eval_per_query.tsv",
        description="Compare two eval runs query by query (e.g. before and after a params change).",
    )
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument(
        "--system",
        default="finetuned",
        help="system to compare, as test_set/system (e.g. synthetic/hybrid); "
        "a bare name takes the first test set's (default: finetuned)",
    )
    compare.add_argument(
        "--measure", default="NDCG@10", help="per-query measure (default: NDCG@10)"
    )
    compare.set_defaults(func=_run_compare)
    preset = sub.add_parser(
        "preset",
        help="run a DVC experiment with a params preset (e.g. params/gpu-reference.yaml)",
        description="Check a preset against params.yaml, then run `dvc exp run -S key=value ... "
        "[DVC_ARGS]` so DVC applies it to params.yaml and records the experiment. "
        "Options after FILE go to `dvc exp run` (e.g. --queue, -n NAME).",
    )
    preset.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the dvc command instead of running it",
    )
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
        return guarded(lambda: args.func(args))  # bad input: one line, exit code 2, as stages/*.py
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
