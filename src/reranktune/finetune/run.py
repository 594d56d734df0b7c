"""Finetune end to end: data, prior, model, Trainer, checkpoints, final Hugging Face folder."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments, set_seed

from reranktune.finetune.checkpoints import SealCheckpoints, discard_incomplete, last_complete
from reranktune.finetune.data import ListwiseCollator, ListwiseDataset
from reranktune.finetune.model_card import write_model_card
from reranktune.finetune.trainer import ListwiseTrainer, listwise_loss, ranking_metrics
from reranktune.io import InputError, atomic_dir, write_json
from reranktune.models import bf16_enabled, resolve_model
from reranktune.params import FinetuneParams, ModelParams, RetrievalParams
from reranktune.reranker.config import PriorConfig, RerankerConfig
from reranktune.reranker.model import load_classifier, load_tokenizer, model_input_names
from reranktune.reranker.prior import PRIOR_FOLDER, Prior, fit_scale, save_prior
from reranktune.reranker.scoring import PairEncoder, positive_ranks

log = logging.getLogger(__name__)

FINGERPRINT = "run_fingerprint.json"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def batch_layout(params: FinetuneParams, n_devices: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) so one optimiser step sees ``global_batch_size``
    queries."""
    per_device = min(params.per_device_batch_size, math.ceil(params.global_batch_size / n_devices))
    accumulation = math.ceil(params.global_batch_size / (per_device * n_devices))
    if per_device * n_devices * accumulation != params.global_batch_size:
        log.warning(
            "global_batch_size %d is not a multiple of %d devices x %d; using %d",
            params.global_batch_size,
            n_devices,
            per_device,
            per_device * n_devices * accumulation,
        )
    return per_device, accumulation


def precision_flags(mode: str) -> dict:
    """The Trainer's precision: ``auto`` is bf16 where the device runs it natively (a GPU that
    has it, a CPU with AMX or AVX512-BF16), else fp32. Elsewhere bf16 is emulated and trains
    many times slower than fp32, so an explicit ``bf16`` there is said aloud."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    native = bf16_enabled("auto", device)
    if mode == "auto":
        mode = "bf16" if native else "fp32"
    elif mode == "bf16" and not native:
        hardware = "GPU has no bf16" if device == "cuda" else "CPU has neither AMX nor AVX512-BF16"
        log.warning(
            "finetune.mixed_precision bf16: this %s, so bf16 is emulated and trains many times "
            "slower than fp32 (auto picks fp32 here)",
            hardware,
        )
    return {"bf16": mode == "bf16", "fp16": mode == "fp16"}


def _fingerprint(params: FinetuneParams, model: ModelParams, train_file: Path) -> str:
    digest = hashlib.sha256(params.model_dump_json().encode())
    digest.update(model.model_dump_json().encode())
    digest.update(hashlib.sha256(train_file.read_bytes()).digest())
    digest.update(str(world_size()).encode())
    return digest.hexdigest()


def _prepare_checkpoints(folder: Path, fingerprint: str) -> bool:
    """Keep complete checkpoints only if they belong to this exact run; True when one can be
    resumed."""
    marker = folder / FINGERPRINT
    if folder.exists():
        same_run = (
            marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint
        )
        if not same_run:
            log.info("%s: checkpoints from another configuration, starting fresh", folder)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fingerprint})
    discard_incomplete(folder)
    return last_complete(folder) is not None


def prior_evidence(
    prior: Prior, data: ListwiseDataset, source: Path, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of ``data``, the prior's (cosine, normalised BM25), the file's cosines reused
    (checked)."""
    queries, passages = data.pairs()
    scores = data.file_scores() if prior.encoder is not None else None
    return prior.training_evidence(queries, passages, scores, data.clozed_rows(), source, seed)


def attach_prior(
    prior: Prior,
    datasets: list[ListwiseDataset],
    source: Path,
    seed: int,
    in_loss: bool = True,
    as_teacher: bool = False,
) -> None:
    """Each passage's prior score, weighed by the recipe: added to the logit in the loss, and/or
    the teacher."""
    if not (in_loss or as_teacher):
        return
    for data in datasets:
        scores = prior.recipe.prior(*prior_evidence(prior, data, source, seed)).tolist()
        if in_loss:
            data.set_prior(scores)
        if as_teacher:
            data.set_teacher(scores)


def prior_signal(data: ListwiseDataset, temperature: float) -> dict | None:
    """What the training groups leave the cross-encoder to learn beyond the prior: the share the
    prior alone already ranks right, and its listwise loss, which a logit of zero trains at.

    Near 1 and near 0, the labels only confirm the first stage, and training has little to teach
    (queries cut from their own passage are the usual cause; an LLM generator asks harder ones).
    """
    if not data.items or "prior" not in data.items[0]:
        return None
    scores = torch.tensor([item["prior"] for item in data.items], dtype=torch.float64)
    loss = listwise_loss(scores.flatten(), scores.shape[1], temperature)
    return {
        "groups_ranked_first": round(float((positive_ranks(scores.numpy()) == 1).mean()), 4),
        "loss": round(float(loss), 6),
    }


def fitted_prior(
    prior: Prior, trainer, val_data: ListwiseDataset, val_file: Path, seed: int
) -> Prior | None:
    """The prior rescaled to rank the validation queries best with the trained logit
    (``prior.fit_scale``)."""
    logits = trainer.predict(val_data).predictions.astype(np.float64)
    weighted = prior.recipe.prior(*prior_evidence(prior, val_data, val_file, seed)).reshape(
        logits.shape
    )
    scale, mrr = fit_scale(logits, weighted)
    log.info(
        "prior scale fitted on %d validation queries: x%g (MRR %.4f)%s",
        len(val_data),
        scale,
        mrr,
        "" if scale else "; the reranker ships without a prior",
    )
    return prior.scaled(scale)


def stage_prior(
    params: FinetuneParams, retrieval: RetrievalParams, train_data: ListwiseDataset, staging: Path
) -> Prior | None:
    """Save the prior in ``staging`` and load it back as eval and serve will; the output folder
    gets a copy."""
    if not (params.prior.dense_weight or params.prior.lexical_weight):
        return None
    config = save_prior(params.prior, retrieval, train_data.corpus_texts, staging)
    return Prior.load(staging, config, trust_remote_code=retrieval.embedding.trust_remote_code)


def training_arguments(
    params: FinetuneParams, checkpoint_dir: Path, per_device: int, accumulation: int, validate: bool
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        learning_rate=params.learning_rate,
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        num_train_epochs=params.num_epochs,
        warmup_steps=params.lr_warmup_steps,
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if validate else "no",  # validated at every checkpoint
        eval_steps=params.save_steps,
        load_best_model_at_end=validate,
        save_only_model=False,
        metric_for_best_model="mrr" if validate else None,
        greater_is_better=True,
        seed=params.seed,
        data_seed=params.seed,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        optim="adamw_torch_fused",  # transformers' default since torch 2.8, named so that it stays
        # the loss's NaN check is a host sync every step on a GPU; a NaN loss shows in the curves
        # instead
        logging_nan_inf_filter=False,
        accelerator_config={
            "non_blocking": torch.cuda.is_available()
        },  # pinned batches, copied without a wait
        ddp_find_unused_parameters=False,
        fsdp=params.fsdp,
        report_to="none",
        **precision_flags(params.mixed_precision),
    )


def run_summary(
    params: FinetuneParams,
    model: ModelParams,
    trainer,
    result,
    head_was_new: bool,
    train_data,
    val_data,
    per_device: int,
    accumulation: int,
) -> dict:
    summary = {
        "base_model": model.base_model,
        "base_head_was_new": head_was_new,
        "train_records": len(train_data),
        "val_records": len(val_data) if val_data else 0,
        "steps": trainer.state.global_step,
        "steps_per_epoch": math.ceil(len(train_data) / (per_device * world_size() * accumulation)),
        "per_device_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "world_size": world_size(),
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "train_loss": round(result.training_loss, 6),
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
        "train_pairs_per_s": round(
            result.metrics.get("train_samples_per_second", 0.0) * params.train_n_passages, 2
        ),
    }
    if val_data is not None:
        summary["best_val_mrr"] = trainer.state.best_metric
    summary["prior_alone"] = prior_signal(train_data, params.temperature)
    if summary["prior_alone"]:
        log.info(
            "the prior alone ranks %.1f%% of the training groups' positives first (loss %.4f)",
            100 * summary["prior_alone"]["groups_ranked_first"],
            summary["prior_alone"]["loss"],
        )
    return summary


def save_reranker(
    trainer,
    params: FinetuneParams,
    model: ModelParams,
    prior: Prior | None,
    staging: Path,
    output_dir: Path,
    summary: dict,
) -> None:
    """The Hugging Face folder with ``reranktune.json``, the prior training used, the card and the
    summary."""
    with atomic_dir(output_dir) as tmp:
        trainer.save_model(str(tmp))
        prior_config: PriorConfig | None = None
        if prior is not None:
            shutil.copytree(staging / PRIOR_FOLDER, tmp / PRIOR_FOLDER)
            prior_config = prior.config
        RerankerConfig(
            prompt_template=params.prompt_template,
            max_length=params.rerank_max_length,
            base_model=model.base_model,
            train_n_passages=params.train_n_passages,
            prior=prior_config,
        ).save(tmp)
        write_model_card(tmp, params, model, summary)
        write_json(tmp / "training_summary.json", summary)


def set_dropout(classifier, rate: float) -> None:
    """Set every dropout layer's rate for this training; the saved config keeps the model's own.

    On a CPU, dropout's masks cost a large share of a small model's step: without them (and on
    eager attention) the same minutes train about twice the pairs (bench/train_throughput.py).
    """
    for module in classifier.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def run_finetune(
    params: FinetuneParams,
    train_file: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    live_dir: str | Path,
    val_file: str | Path | None = None,
    callbacks: list | None = None,
    model: ModelParams | None = None,
    retrieval: RetrievalParams | None = None,
) -> dict:
    """Train ``model.base_model``, checkpointing every ``save_steps``; a rerun with the same inputs
    resumes.

    ``retrieval`` is the first stage that scored the training file: the prior carries its
    evidence, is trained against and is saved with the reranker. ``model`` and ``retrieval``
    default to ModelParams() and RetrievalParams().
    """
    model = model or ModelParams()
    retrieval = retrieval or RetrievalParams()
    train_file, output_dir, checkpoint_dir = (
        Path(train_file),
        Path(output_dir),
        Path(checkpoint_dir),
    )
    set_seed(params.seed)
    base = resolve_model(model.base_model)
    tokenizer = load_tokenizer(base, model.trust_remote_code)
    classifier, head_was_new = load_classifier(
        base, model.trust_remote_code, params.attn_implementation, tokenizer.pad_token_id
    )
    if params.dropout is not None:
        set_dropout(classifier, params.dropout)
    if params.gradient_checkpointing:
        classifier.gradient_checkpointing_enable()
    with_scores = params.distillation_weight > 0 or params.prior.dense_weight > 0
    train_data, val_data = (
        ListwiseDataset(path, params.train_n_passages, with_scores, params.cloze_rate, params.seed)
        if path and Path(path).exists()
        else None
        for path in (train_file, val_file)
    )
    fit = params.prior.fit_scale and (params.prior.dense_weight or params.prior.lexical_weight)
    if fit and (params.prior.in_training or val_data is None):
        raise InputError(
            "finetune.prior.fit_scale: fits the prior's scale to a logit trained alone, on "
            "validation queries; set finetune.prior.in_training to false and prep.val_ratio above 0"
        )

    is_main = int(os.environ.get("RANK", "0")) == 0
    resume = (
        _prepare_checkpoints(checkpoint_dir, _fingerprint(params, model, train_file))
        if is_main
        else True
    )
    with tempfile.TemporaryDirectory(prefix="reranktune-prior-") as staging:
        prior = stage_prior(params, retrieval, train_data, Path(staging))
        if prior is not None:
            attach_prior(
                prior,
                [d for d in (train_data, val_data) if d is not None],
                train_file,
                params.seed,
                params.prior.in_training,
                params.distillation_teacher == "prior",
            )
        per_device, accumulation = batch_layout(params, world_size())
        trainer, result = _train(
            params,
            classifier,
            tokenizer,
            train_data,
            val_data,
            checkpoint_dir,
            live_dir,
            callbacks,
            resume,
            per_device,
            accumulation,
        )
        summary = run_summary(
            params,
            model,
            trainer,
            result,
            head_was_new,
            train_data,
            val_data,
            per_device,
            accumulation,
        )
        if fit:  # fit needs a weight above 0, so there is a prior
            prior = fitted_prior(prior, trainer, val_data, Path(val_file), params.seed)
        summary["prior_weights"] = (
            {"dense": prior.recipe.dense_weight, "lexical": prior.recipe.lexical_weight}
            if prior is not None
            else None
        )
        if is_main:
            save_reranker(trainer, params, model, prior, Path(staging), output_dir, summary)
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


def make_trainer(
    params: FinetuneParams,
    model,
    tokenizer,
    train_data: ListwiseDataset,
    val_data: ListwiseDataset | None,
    checkpoint_dir: Path,
    per_device: int,
    accumulation: int,
    callbacks: list | None = None,
) -> ListwiseTrainer:
    """The stage's Trainer: collator, loss, schedule, and the data options
    (bench/gpu/gpu_throughput.py times it too)."""
    encoder = PairEncoder(
        tokenizer,
        params.prompt_template,
        params.rerank_max_length,
        model_input_names(model, tokenizer),
    )
    if params.pretokenize:
        for data in (train_data, val_data):
            if data is not None:
                data.tokenize(encoder)
    return ListwiseTrainer(
        model=model,
        args=training_arguments(
            params, checkpoint_dir, per_device, accumulation, val_data is not None
        ),
        train_dataset=train_data,
        eval_dataset=val_data,
        data_collator=ListwiseCollator(encoder),
        processing_class=tokenizer,
        compute_metrics=ranking_metrics if val_data else None,
        callbacks=list(callbacks or []),
        n_passages=params.train_n_passages,
        temperature=params.temperature,
        decay=params.lr_scheduler,
        distillation_weight=params.distillation_weight,
        distillation_temperature=params.distillation_temperature,
        logit_loss_weight=params.prior.logit_loss_weight,
        prior_ramp_share=params.prior.ramp_share,
        group_by_length=params.group_by_length,
    )


def _train(
    params: FinetuneParams,
    model,
    tokenizer,
    train_data: ListwiseDataset,
    val_data: ListwiseDataset | None,
    checkpoint_dir: Path,
    live_dir: str | Path,
    callbacks: list | None,
    resume: bool,
    per_device: int,
    accumulation: int,
):
    """Run the Trainer, resuming where a checkpoint allows; returns (trainer, train result)."""
    is_main = int(os.environ.get("RANK", "0")) == 0
    # the seal comes first: a callback after it that stops the run finds the checkpoint complete
    ours = [SealCheckpoints()] + ([_dvclive_callback(live_dir)] if is_main else [])
    trainer = make_trainer(
        params,
        model,
        tokenizer,
        train_data,
        val_data,
        checkpoint_dir,
        per_device,
        accumulation,
        ours + list(callbacks or []),
    )
    checkpoint = last_complete(checkpoint_dir) if resume else None
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    return trainer, trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def _dvclive_callback(live_dir: str | Path):
    """Training curves as DVC plots; without dvclive (a bare GPU box) a plain log instead."""
    try:
        from dvclive import Live
    except ImportError:
        from transformers import PrinterCallback

        log.warning("dvclive is not installed: training curves go to the log only")
        return PrinterCallback()
    from transformers.integrations import DVCLiveCallback

    # dvcyaml=None: the pipeline's dvc.yaml declares these plots itself
    return DVCLiveCallback(live=Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False))
