"""The pipeline's stages with their fixed paths; ``stages/*.py`` and the CLI call these.

The paths here are the ones ``dvc.yaml`` declares as deps and outs. Each stage writes its
full report to ``metrics/<stage>_details.json`` and the few numbers a review decides on to
``metrics/<stage>.json``, the file DVC tracks as a metric.
"""

from __future__ import annotations

import os
from pathlib import Path

from reranktune.params import (
    EvalParams,
    ExportParams,
    FinetuneParams,
    ModelParams,
    PrepParams,
    RetrievalParams,
    SdgParams,
    load_section,
)

SDG_OUTPUT = Path("data/sdg/qa.jsonl")
SDG_METRICS = Path("metrics/sdg.json")
SDG_DETAILS = Path("metrics/sdg_details.json")
PREP_OUTPUT = Path("data/prep")
PREP_METRICS = Path("metrics/prep.json")
PREP_DETAILS = Path("metrics/prep_details.json")
TRAIN_FILE = PREP_OUTPUT / "train.json"
VAL_FILE = PREP_OUTPUT / "val.json"
BEIR_DIR = PREP_OUTPUT / "eval_beir"
MODEL_DIR = Path("models/reranker")
CHECKPOINT_DIR = Path("models/checkpoints")
FINETUNE_LIVE = Path("metrics/finetune")
FINETUNE_METRICS = Path("metrics/finetune.json")
EVAL_METRICS = Path("metrics/eval.json")
EVAL_DETAILS = Path("metrics/eval_details.json")
EVAL_PLOTS = Path("metrics/eval_plots.json")
EVAL_PER_QUERY = Path("metrics/eval_per_query.tsv")
EVAL_REPORT = Path("metrics/eval_report.md")
ONNX_DIR = Path("models/onnx")
EXPORT_METRICS = Path("metrics/export.json")
EXPORT_DETAILS = Path("metrics/export_details.json")


def _review(path: Path, values: dict) -> dict:
    from reranktune.io import write_json

    write_json(path, values)
    return values


def sdg(params_file: str = "params.yaml") -> dict:
    from reranktune.sdg.run import run_sdg

    params: SdgParams = load_section("sdg", params_file)
    retrieval: RetrievalParams = load_section("retrieval", params_file)
    summary = run_sdg(params, SDG_OUTPUT, SDG_DETAILS, retrieval.embedding)
    return _review(SDG_METRICS, {k: summary[k] for k in ("documents_read", "chunks", "qa_pairs")})


def prep(params_file: str = "params.yaml") -> dict:
    from reranktune.prep.run import run_prep

    params: PrepParams = load_section("prep", params_file)
    retrieval: RetrievalParams = load_section("retrieval", params_file)
    report = run_prep(params, params.input_path, PREP_OUTPUT, PREP_DETAILS, retrieval)
    return _review(
        PREP_METRICS,
        {
            "train_records": report.get("train_records", 0),
            "test_queries": report.get("queries_per_split", {}).get("test", 0),
            "corpus_chunks": report.get("corpus_chunks", 0),
        },
    )


def finetune(params_file: str = "params.yaml") -> dict | None:
    from reranktune.finetune.launch import launched_by_torchrun, relaunch_with_torchrun
    from reranktune.finetune.run import run_finetune

    params: FinetuneParams = load_section("finetune", params_file)
    if params.nproc > 1 and not launched_by_torchrun():
        relaunch_with_torchrun(params.nproc, ["finetune", "--params", str(params_file)])
        return None
    model: ModelParams = load_section("model", params_file)
    retrieval: RetrievalParams = load_section(
        "retrieval", params_file
    )  # it scored train.json: the prior
    summary = run_finetune(
        params,
        TRAIN_FILE,
        MODEL_DIR,
        CHECKPOINT_DIR,
        FINETUNE_LIVE,
        VAL_FILE,
        model=model,
        retrieval=retrieval,
    )
    review = {k: summary[k] for k in ("train_loss", "train_pairs_per_s")}
    if summary.get("prior_alone"):  # how much the training data leaves to learn beyond the prior
        review["prior_ranks_first"] = summary["prior_alone"]["groups_ranked_first"]
    return _review(FINETUNE_METRICS, review) if os.environ.get("RANK", "0") == "0" else review


def eval(params_file: str = "params.yaml", **overrides) -> dict:  # noqa: A001 - the stage's name
    """``overrides`` (e.g. endpoint_url, data_path from the CLI) replace eval params; first_stage
    the retrieval one."""
    from reranktune.evaluation.run import EvalOutputs, run_eval

    params: EvalParams = load_section("eval", params_file)
    retrieval: RetrievalParams = load_section("retrieval", params_file)
    if "first_stage" in overrides:
        retrieval = retrieval.model_copy(update={"first_stage": overrides.pop("first_stage")})
    params = EvalParams.model_validate({**params.model_dump(), **overrides})
    outputs = EvalOutputs(EVAL_METRICS, EVAL_DETAILS, EVAL_PLOTS, EVAL_PER_QUERY, EVAL_REPORT)
    return run_eval(params, MODEL_DIR, outputs, retrieval, load_section("model", params_file))


def export(params_file: str = "params.yaml") -> dict:
    from reranktune.export.run import run_export
    from reranktune.retrieval.first_stage import FirstStageSettings

    params: ExportParams = load_section("export", params_file)
    first_stage = FirstStageSettings.from_params(
        load_section("retrieval", params_file)
    )  # what the gate reranks
    report = run_export(params, first_stage, MODEL_DIR, BEIR_DIR, ONNX_DIR, EXPORT_DETAILS)
    variants = [name for name in report if "accepted" in report[name] and name != "prior"]
    return _review(
        EXPORT_METRICS,
        {
            name: {"accepted": report[name]["accepted"], "ndcg_drop": report[name]["ndcg_drop"]}
            for name in variants
        },
    )
