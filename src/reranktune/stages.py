"""The pipeline's stages with their fixed paths; ``stages/*.py`` and the CLI call these.

The paths here are the ones ``dvc.yaml`` declares as deps and outs.
"""
from __future__ import annotations

from pathlib import Path

from reranktune.params import (
    EvalParams,
    ExportParams,
    FinetuneParams,
    PrepParams,
    SdgParams,
    load_section,
)

SDG_OUTPUT = Path("data/sdg/qa.jsonl")
SDG_SUMMARY = Path("metrics/sdg.json")
PREP_OUTPUT = Path("data/prep")
PREP_REPORT = Path("metrics/prep.json")
TRAIN_FILE = PREP_OUTPUT / "train.json"
VAL_FILE = PREP_OUTPUT / "val.json"
BEIR_DIR = PREP_OUTPUT / "eval_beir"
MODEL_DIR = Path("models/reranker")
CHECKPOINT_DIR = Path("models/checkpoints")
FINETUNE_LIVE = Path("metrics/finetune")
EVAL_METRICS = Path("metrics/eval.json")
EVAL_PLOTS = Path("metrics/eval_plots.json")
EVAL_PER_QUERY = Path("metrics/eval_per_query.tsv")
EVAL_REPORT = Path("metrics/eval_report.md")
ONNX_DIR = Path("models/onnx")
EXPORT_REPORT = Path("metrics/export.json")


def sdg(params_file: str = "params.yaml") -> dict:
    from reranktune.sdg.run import run_sdg

    params: SdgParams = load_section("sdg", params_file)
    return run_sdg(params, SDG_OUTPUT, SDG_SUMMARY)


def prep(params_file: str = "params.yaml") -> dict:
    from reranktune.prep.run import run_prep

    params: PrepParams = load_section("prep", params_file)
    return run_prep(params, params.input_path, PREP_OUTPUT, PREP_REPORT)


def finetune(params_file: str = "params.yaml") -> dict | None:
    from reranktune.finetune.launch import launched_by_torchrun, relaunch_with_torchrun
    from reranktune.finetune.run import run_finetune

    params: FinetuneParams = load_section("finetune", params_file)
    if params.nproc > 1 and not launched_by_torchrun():
        relaunch_with_torchrun(params.nproc, ["finetune", "--params", str(params_file)])
        return None
    prep_params: PrepParams = load_section("prep", params_file)   # its embedder scored train.json: the prior
    return run_finetune(params, TRAIN_FILE, MODEL_DIR, CHECKPOINT_DIR, FINETUNE_LIVE, VAL_FILE,
                        prior_embedding=prep_params.embedding)


def eval(params_file: str = "params.yaml", **overrides) -> dict:  # noqa: A001 - the stage's name
    """``overrides`` (e.g. endpoint_url, data_path from the CLI) replace eval params."""
    from reranktune.evaluation.run import run_eval

    params: EvalParams = load_section("eval", params_file)
    params = EvalParams.model_validate({**params.model_dump(), **overrides})
    prep_params: PrepParams = load_section("prep", params_file)
    tune: FinetuneParams = load_section("finetune", params_file)
    return run_eval(params, prep_params.embedding, MODEL_DIR, tune.base_model, EVAL_METRICS,
                    EVAL_PLOTS, EVAL_PER_QUERY, EVAL_REPORT, tune.trust_remote_code)


def export(params_file: str = "params.yaml") -> dict:
    from reranktune.export.run import run_export

    params: ExportParams = load_section("export", params_file)
    prep_params: PrepParams = load_section("prep", params_file)   # the gate reranks eval's dense candidates
    return run_export(params, prep_params.embedding, MODEL_DIR, BEIR_DIR, ONNX_DIR, EXPORT_REPORT)
