"""Export end to end: ONNX variants, the bf16 PyTorch variant, an optional TensorRT engine,
the accuracy gate, and a self-describing folder (tokenizer, prompt, max length, inputs,
accepted variants, and the first-stage prior's embedding model when the reranker has one)
for serve.

The folder's default variant (what serve loads) is the fastest accepted CPU variant, timed
here as serve runs it (logit + prior) on a fixed batch of the gate's pairs: which one is
fastest depends on the CPU (bf16 where it has AMX, INT8 where VNNI helps), so it is
measured, not assumed. The prior's encoder runs as its variant does: under the bf16
variant in PyTorch bf16 too, under the ONNX ones as an ONNX graph, INT8 when ``int8`` is
among the variants and its graph passes a gate like the cross-encoder's, fp32 otherwise.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np

from reranktune.beir_data import load_beir
from reranktune.export.gate import NDCG_KEY, RankingSet, judge, ranking_set
from reranktune.export.onnx_export import export_onnx
from reranktune.export.parity import ParityProbe, compare_scores
from reranktune.export.tensorrt_engine import (
    ENGINE_FILE,
    TensorRTSession,
    build_engine,
    tensorrt_missing,
)
from reranktune.export.variants import (
    VARIANTS,
    Variant,
    build_variants,
    copy_weights,
    optimize,
    quantize_int8,
    remove_weights,
)
from reranktune.io import InputError, atomic_dir, write_json
from reranktune.models import bf16_enabled, on_cpu
from reranktune.params import ExportParams
from reranktune.reranker.config import OnnxConfig, PriorConfig, VariantConfig
from reranktune.reranker.model import Reranker
from reranktune.reranker.onnx import onnx_session
from reranktune.reranker.prior import PRIOR_ONNX, Prior, export_prior_onnx
from reranktune.reranker.scoring import LogitBackend, SessionBackend, TorchBackend, format_pair
from reranktune.retrieval.first_stage import FirstStageSettings

log = logging.getLogger(__name__)

TENSORRT = Variant(ENGINE_FILE, "cuda", "fp16, norms fp32", False, "tensorrt")
PRIOR_INT8 = "model.int8.onnx"  # the prior's encoder with INT8 weights, when the gate accepts it
SPEED_PAIRS = 256  # the gate's first pairs, timed per accepted CPU variant
SPEED_ROUNDS = 2  # each variant is timed this often, round-robin, and keeps its best


class ParityError(RuntimeError):
    """The exported graph does not score like the PyTorch model."""


def parity_texts(beir_dir: str | Path, template: str, n_pairs: int, seed: int = 0) -> list[str]:
    """Real (query, passage) pairs from the test set: each query's positive and a random passage."""
    data = load_beir(beir_dir)
    rng = random.Random(seed)
    doc_ids = sorted(data.corpus)
    texts: list[str] = []
    for qid in sorted(data.queries):
        for did in [next(iter(data.qrels[qid])), rng.choice(doc_ids)]:
            texts.append(format_pair(template, data.queries[qid], data.passage_text(did)))
    rng.shuffle(texts)
    # one over-long pair exercises the truncation path at the maximum length
    texts.append(
        format_pair(template, "long query", " ".join(data.passage_text(d) for d in doc_ids[:20]))
    )
    return texts[:n_pairs] if len(texts) > n_pairs else texts


def _tensorrt(params: ExportParams, out: Path, names: list[str]) -> dict[str, Variant]:
    """Build the engine where TensorRT and a GPU are present; otherwise say why not."""
    if not params.tensorrt:
        return {}
    missing = tensorrt_missing()
    if missing:
        log.info("TensorRT engine skipped: %s; the ONNX variants are unaffected", missing)
        return {}
    build_engine(
        out / VARIANTS["fp32"].file, out / ENGINE_FILE, names, params.trt_batch, params.trt_length
    )
    return {"tensorrt": TENSORRT}


def _bf16(params: ExportParams, model_dir: Path, out: Path) -> dict[str, dict]:
    """The PyTorch weights for bf16 autocast where this CPU runs bf16 natively (AMX or
    AVX512-BF16); elsewhere it is emulated, slower than fp32, and not built. Returns how it
    was built, as ``build_variants`` does."""
    if "bf16" not in params.variants:
        return {}
    if not bf16_enabled("auto", "cpu"):
        log.info("bf16 variant skipped: this CPU has neither AMX nor AVX512-BF16")
        return {}
    return {"bf16": copy_weights(model_dir, out)}


def _backend(variant: Variant, path: Path, cpu_model) -> tuple[LogitBackend, str]:
    """The variant as serve would run it, and what runs it."""
    if variant.runtime == "torch":
        return TorchBackend(cpu_model, "cpu", bf16=True), "PyTorch bf16 autocast (CPU)"
    if variant.runtime == "tensorrt":
        return SessionBackend(TensorRTSession(path)), "TensorRT"
    session = onnx_session(str(path), variant.device)
    return SessionBackend(session), session.get_providers()[0]


def _onnx_prior(out: Path, config: PriorConfig, file: str) -> tuple[Prior, PriorConfig]:
    """The prior with its dense encoder on ``prior/<file>``, and the config entry naming it."""
    candidate = config.model_copy(
        update={"dense": config.dense.model_copy(update={"onnx_file": file})}
    )
    return Prior.load(out, candidate, onnx=True), candidate


def _export_prior(
    reranker: Reranker,
    model_dir: Path,
    out: Path,
    ranking: RankingSet,
    params: ExportParams,
    torch_ndcg: float,
    reference: np.ndarray,
) -> tuple[Prior, PriorConfig, dict]:
    """Copy the prior next to the graph, with an ONNX graph of its encoder if that scores like
    PyTorch (``reference``: its fp32 scores of the gate's pairs), and an INT8 one
    (``_prior_int8``) if ``int8`` is among the variants.

    Returns the prior the ONNX variants serve with (INT8 where accepted, else fp32 ONNX, else
    PyTorch when its graph was rejected), its config entry and its figures over the gate's pairs.
    """
    config = reranker.config.prior
    folder = out / config.folder
    shutil.copytree(model_dir / config.folder, folder)
    if config.dense is None:  # lexical only: statistics, nothing to export
        return reranker.prior, config, {"onnx_file": None, "accepted": True}
    export_prior_onnx(reranker.prior, folder / PRIOR_ONNX, params.opset)
    exported, candidate = _onnx_prior(out, config, PRIOR_ONNX)
    queries, passages = ranking.texts()
    diff = float(np.max(np.abs(exported.scores(queries, passages) - reference)))
    accepted = diff <= params.parity_atol
    log.info(
        "prior ONNX graph: max |prior score diff| %.2e over %d pairs: %s",
        diff,
        len(queries),
        "accepted" if accepted else "REJECTED, serve uses PyTorch for the prior",
    )
    report = {
        "onnx_file": f"{config.folder}/{PRIOR_ONNX}" if accepted else None,
        "max_abs_diff": diff,
        "pairs": len(queries),
        "accepted": accepted,
    }
    if not accepted:
        (folder / PRIOR_ONNX).unlink()
        return reranker.prior, config, report
    if "int8" in params.variants:
        report["int8"], int8 = _prior_int8(reranker, out, ranking, reference, torch_ndcg, params)
        if int8 is not None:
            exported, candidate = int8
            report["onnx_file"] = f"{config.folder}/{PRIOR_INT8}"
    return exported, candidate, report


def _prior_int8(
    reranker: Reranker,
    out: Path,
    ranking: RankingSet,
    reference: np.ndarray,
    torch_ndcg: float,
    params: ExportParams,
) -> tuple[dict, tuple[Prior, PriorConfig] | None]:
    """The prior's encoder fused and quantised as the cross-encoder's INT8 variant is, and gated
    like it: its prior scores against PyTorch's (Spearman >= lossy_min_spearman) and the NDCG@10
    of PyTorch's logit + this prior (drop <= max_ndcg_drop).

    Returns its verdict and, when accepted, the prior and config entry serve uses.
    """
    config = reranker.config.prior
    folder = out / config.folder
    fused = folder / "model.opt.onnx"  # an intermediate: fused ops quantise better
    try:
        optimize(folder / PRIOR_ONNX, fused, reranker.prior.encoder.model[0].auto_model.config)
        quantize_int8(fused, folder / PRIOR_INT8)
    finally:
        fused.unlink(missing_ok=True)
    int8, candidate = _onnx_prior(out, config, PRIOR_INT8)
    queries, passages = ranking.texts()
    parity = compare_scores(reference, int8.scores(queries, passages))
    ndcg, _ = ranking.ndcg(reranker.with_backend(reranker.backend, int8), params.batch_size)
    verdict = {
        **judge(False, parity, ndcg, torch_ndcg, params),
        "onnx_file": f"{config.folder}/{PRIOR_INT8}",
        "size_mb": round((folder / PRIOR_INT8).stat().st_size / 2**20, 1),
    }
    del verdict["shapes"]
    log.info(
        "prior INT8 graph: max |prior score diff| %.2e, Spearman %.4f, %s=%s (torch %.4f): %s",
        parity.max_abs_diff,
        parity.spearman,
        NDCG_KEY,
        verdict[NDCG_KEY],
        torch_ndcg,
        "accepted" if verdict["accepted"] else f"REJECTED ({verdict['rejected_because']})",
    )
    if not verdict["accepted"]:
        (folder / PRIOR_INT8).unlink()
        verdict["onnx_file"] = None
        return verdict, None
    return verdict, (int8, candidate)


def _bf16_prior(out: Path, config: PriorConfig, reference: np.ndarray, ranking: RankingSet):
    """The prior the bf16 variant serves with: its encoder in PyTorch bf16 as well. Returns it, its
    config entry, and its scores against fp32 PyTorch's (``reference``) on the gate's pairs."""
    bf16 = config.model_copy(update={"dense": config.dense.model_copy(update={"bf16": True})})
    prior = Prior.load(out, bf16, device="cpu")
    parity = compare_scores(reference, prior.scores(*ranking.texts()))
    return prior, bf16, {"max_abs_diff": parity.max_abs_diff, "spearman": parity.spearman}


def _fastest(report: dict, variants: dict[str, Variant]) -> str | None:
    """The accepted CPU variant that served fastest here (TensorRT and fp16 are for GPUs)."""
    timed = [
        name
        for name, variant in variants.items()
        if variant.device == "cpu" and report[name]["accepted"] and report[name]["pairs_per_s"]
    ]
    return max(timed, key=lambda name: report[name]["pairs_per_s"]) if timed else None


def run_export(
    params: ExportParams,
    first_stage: FirstStageSettings,
    model_dir: str | Path,
    beir_dir: str | Path,
    output_dir: str | Path,
    report_path: str | Path,
) -> dict:
    # the gate's PyTorch reference reranks in fp32 on the GPU where there is one; export and
    # parity use a CPU copy
    reranker = Reranker.from_pretrained(str(model_dir), bf16=False)
    cpu_model = on_cpu(reranker.model)
    texts = parity_texts(beir_dir, reranker.prompt_template, params.parity_pairs)
    probe = ParityProbe(
        cpu_model, reranker.tokenizer, texts, reranker.max_length, reranker.input_names
    )
    broken = int(np.sum(~np.isfinite(probe.torch_scores)))
    if broken:  # no export can match such scores: a bad model, not a bad export
        raise InputError(
            f"{model_dir}: the model produced NaN or infinite scores on {broken} of "
            f"{len(probe.torch_scores)} test pairs: its weights are broken "
            "(a diverged training run?); retrain it"
        )
    sample = reranker.tokenizer(texts[:2], padding=True, return_tensors="pt")
    with atomic_dir(output_dir) as out:
        names = export_onnx(
            cpu_model, reranker.tokenizer, out / VARIANTS["fp32"].file, params.opset, sample
        )
        built = build_variants(out, params.variants, reranker.model.config)
        built |= _bf16(params, Path(model_dir), out)
        variants = {name: VARIANTS[name] for name in built} | _tensorrt(params, out, names)
        ranking = ranking_set(beir_dir, first_stage, params.gate_queries, params.gate_top_k)
        report, prior_configs = _gate(
            reranker, cpu_model, variants, built, probe, ranking, Path(model_dir), out, params
        )
        write_json(report_path, report)
        if not report["fp32"]["accepted"]:
            raise ParityError(
                "the fp32 ONNX export fails the accuracy gate: "
                f"{report['fp32']['rejected_because']}"
            )
        for name, variant in variants.items():
            if report[name]["accepted"]:
                continue
            if variant.runtime == "torch":  # rejected: not offered to serve
                remove_weights(out)
            else:
                (out / variant.file).unlink()
        default = report["speed"]["fastest"]
        reranker.tokenizer.save_pretrained(out)
        shutil.copy(Path(model_dir) / "config.json", out / "config.json")
        onnx = OnnxConfig(
            inputs=names,
            output="logits",
            file=VARIANTS[default].file,
            default_variant=default,
            variants={
                name: VariantConfig(
                    file=variant.file if report[name]["accepted"] else None,
                    accepted=report[name]["accepted"],
                    device=variant.device,
                    runtime=variant.runtime,
                    precision=variant.precision,
                    ndcg_at_10=report[name][NDCG_KEY],
                    ndcg_drop=report[name]["ndcg_drop"],
                    pairs_per_s=report[name]["pairs_per_s"],
                )
                for name, variant in variants.items()
            },
            tensorrt_profile={"batch": params.trt_batch, "length": params.trt_length}
            if "tensorrt" in variants
            else None,
            source_model=str(model_dir),
        )
        prior_config = prior_configs.get(variants[default].runtime, prior_configs.get("onnx"))
        reranker.config.model_copy(update={"onnx": onnx, "prior": prior_config}).save(out)
    log.info(
        "exported %s: default %s, accepted %s",
        output_dir,
        default,
        ", ".join(n for n in variants if report[n]["accepted"]),
    )
    return report


def _gate(
    reranker: Reranker,
    cpu_model,
    variants: dict[str, Variant],
    built: dict,
    probe: ParityProbe,
    ranking: RankingSet,
    model_dir: Path,
    out: Path,
    params: ExportParams,
) -> tuple[dict, dict[str, PriorConfig | None]]:
    """Every variant judged against PyTorch, each with the prior it serves with; returns the
    report and, per runtime, the prior's config entry the folder gets when that runtime serves."""
    torch_ndcg, torch_speed = ranking.ndcg(reranker, params.batch_size)
    report: dict = {
        "gate": {
            "queries": len(ranking.data.queries),
            "pairs": ranking.pairs,
            "top_k": params.gate_top_k,
            "first_stage": ranking.first_stage,
            "max_ndcg_drop": params.max_ndcg_drop,
        },
        "torch": {
            NDCG_KEY: round(torch_ndcg, 5),
            "pairs_per_s": round(torch_speed, 1),
            "device": reranker.backend.device,
        },
    }
    config = reranker.config.prior
    priors = {"onnx": reranker.prior}
    prior_configs = {"onnx": config}
    if config is not None:
        reference = reranker.prior.scores(*ranking.texts())
        priors["onnx"], prior_configs["onnx"], report["prior"] = _export_prior(
            reranker, model_dir, out, ranking, params, torch_ndcg, reference
        )
        if "bf16" in variants and config.dense is not None:
            priors["torch"], prior_configs["torch"], bf16_parity = _bf16_prior(
                out, config, reference, ranking
            )
            report["prior"]["bf16"] = bf16_parity
    timed: dict[str, Reranker] = {}
    for name, variant in variants.items():
        backend, provider = _backend(variant, out / variant.file, cpu_model)
        ndcg = None
        if variant.device == "cpu" or provider != "CPUExecutionProvider":
            served = reranker.with_backend(backend, priors.get(variant.runtime, priors["onnx"]))
            ndcg, _ = ranking.ndcg(served, params.batch_size)
            if variant.device == "cpu":
                timed[name] = served
        else:
            # a GPU variant on a CPU-only machine: it loads and scores the probe pairs; that is all
            log.info(
                "%s: no CUDA provider here, so %s is not measured (parity only)", name, NDCG_KEY
            )
        report[name] = {
            **judge(variant.lossless, probe.compare(backend), ndcg, torch_ndcg, params),
            "pairs_per_s": None,
            "provider": provider,
            **built.get(name, {}),
        }
        log.info(
            "%s: %s=%s (torch %.4f), max |diff| %.2e, Spearman %.4f: %s",
            name,
            NDCG_KEY,
            report[name][NDCG_KEY],
            torch_ndcg,
            report[name]["max_abs_diff"],
            report[name]["spearman"],
            "accepted"
            if report[name]["accepted"]
            else f"REJECTED ({report[name]['rejected_because']})",
        )
    report["speed"] = _time_variants(
        {name: served for name, served in timed.items() if report[name]["accepted"]},
        report,
        ranking,
        params,
    )
    report["speed"]["fastest"] = _fastest(report, variants)
    return report, prior_configs


def _time_variants(
    timed: dict[str, Reranker], report: dict, ranking: RankingSet, params: ExportParams
) -> dict:
    """Each accepted CPU variant's pairs/s as serve runs it (logit + the served prior), on a
    fixed batch of the gate's pairs, round-robin so that other load on the machine hits every
    variant alike; each keeps its best round. Writes ``pairs_per_s`` into ``report``."""
    pairs = min(ranking.pairs, SPEED_PAIRS)
    for _ in range(SPEED_ROUNDS):
        for name, served in timed.items():
            speed = round(ranking.served_speed(served, params.batch_size, pairs), 1)
            report[name]["pairs_per_s"] = max(speed, report[name]["pairs_per_s"] or 0.0)
    log.info(
        "served pairs/s (logit + prior, %d pairs, best of %d): %s",
        pairs,
        SPEED_ROUNDS,
        ", ".join(f"{n} {report[n]['pairs_per_s']}" for n in timed),
    )
    return {
        "pairs": pairs,
        "rounds": SPEED_ROUNDS,
        "batch_size": params.batch_size,
        "measures": "pairs/s of logit + prior on this machine's CPU, the prior's cache emptied, "
        "best of the rounds (round-robin)",
    }
