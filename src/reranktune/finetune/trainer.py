"""``transformers.Trainer`` with the spec's listwise loss and learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer

from reranktune.finetune.data import LengthGroupedSampler
from reranktune.reranker.scoring import ScoreRecipe, positive_ranks


def listwise_loss(logits: torch.Tensor, n_passages: int, temperature: float) -> torch.Tensor:
    """Softmax cross-entropy over each group's logits / temperature; the positive is index 0."""
    grouped = logits.view(-1, n_passages).float() / temperature
    target = torch.zeros(grouped.size(0), dtype=torch.long, device=grouped.device)
    return F.cross_entropy(grouped, target)


def distillation_loss(
    logits: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """KL(teacher || student) between each group's softmax distributions.

    The teacher is the first-stage embedder (its cosine scores from prep): matching its
    ordering keeps what it learnt from a billion general pairs while the label loss adapts
    the cross-encoder to the domain.
    """
    student = F.log_softmax(logits.view_as(teacher_scores).float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_scores.float() / teacher_temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def lr_factor(step: int, warmup_steps: int, total_steps: int, decay: str) -> float:
    """Linear warmup from 0.1 x lr, then cosine or linear decay to 0.01 x lr."""
    if warmup_steps and step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress
    return 0.01 + 0.99 * shape


def prior_ramp(step: int, total_steps: int, share: float) -> float:
    """The prior's weight in the training loss at ``step``: rises linearly from 0 to 1 over the
    first ``share`` of the steps, then stays at 1 (as the model is scored)."""
    if share <= 0:
        return 1.0
    return min(1.0, step / max(1.0, share * total_steps))


def ranking_metrics(eval_pred) -> dict:
    """Accuracy@1 and MRR of the positive (index 0) within each group."""
    ranks = positive_ranks(eval_pred.predictions)
    return {"accuracy@1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1.0 / ranks))}


class ListwiseTrainer(Trainer):
    def __init__(
        self,
        *args,
        n_passages: int,
        temperature: float,
        decay: str,
        distillation_weight: float = 0.0,
        distillation_temperature: float = 1.0,
        logit_loss_weight: float = 0.0,
        prior_ramp_share: float = 0.0,
        group_by_length: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.n_passages = n_passages
        self.temperature = temperature
        self.decay = decay
        self.distillation_weight = distillation_weight
        self.distillation_temperature = distillation_temperature
        self.logit_loss_weight = logit_loss_weight
        self.prior_ramp_share = prior_ramp_share
        self.group_by_length = group_by_length
        # our loss is a per-micro-batch mean: let Trainer divide by accumulation steps
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches (transformers' own sampler needs token ids in the items, ours are
        groups)."""
        if not self.group_by_length:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return LengthGroupedSampler(
            dataset.lengths(), self.args.train_batch_size, self.args.data_seed
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_scores = inputs.pop("teacher_scores", None)
        prior_scores = inputs.pop("prior_scores", None)
        logits = model(**inputs).logits[:, 0]
        if prior_scores is not None:  # trained as it will be scored: logit + prior (scoring.py)
            alone = logits
            prior_scores = prior_scores.view(-1).to(logits.device)
            if self.prior_ramp_share and model.training:
                prior_scores = prior_scores * prior_ramp(
                    self.state.global_step, self.state.max_steps, self.prior_ramp_share
                )
            logits = ScoreRecipe.total(logits.float(), prior_scores)
        loss = listwise_loss(logits, self.n_passages, self.temperature)
        if (
            prior_scores is not None and self.logit_loss_weight
        ):  # gradient where the prior alone is right too
            loss = (1 - self.logit_loss_weight) * loss + self.logit_loss_weight * listwise_loss(
                alone, self.n_passages, self.temperature
            )
        if teacher_scores is not None and self.distillation_weight > 0:
            distilled = distillation_loss(
                logits, teacher_scores, self.temperature, self.distillation_temperature
            )
            loss = (1 - self.distillation_weight) * loss + self.distillation_weight * distilled
        return (loss, logits.view(-1, self.n_passages)) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, logits = self.compute_loss(model, inputs, return_outputs=True)
        labels = torch.zeros(logits.size(0), dtype=torch.long, device=logits.device)
        return loss.detach(), logits.detach().float(), labels

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            warmup = self.args.warmup_steps
            self.lr_scheduler = LambdaLR(
                optimizer or self.optimizer,
                lambda step: lr_factor(step, warmup, num_training_steps, self.decay),
            )
        return self.lr_scheduler
