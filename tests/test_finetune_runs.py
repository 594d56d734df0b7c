"""Training runs that must agree: resumed vs uninterrupted, 2 processes vs 1."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_finetune import NO_PRIOR, write_training_set
from transformers import TrainerCallback

from reranktune.cli import main
from reranktune.finetune.checkpoints import is_complete
from reranktune.finetune.run import run_finetune
from reranktune.params import FinetuneParams, ModelParams

SRC = Path(__file__).resolve().parents[1] / "src"


def _params(**overrides) -> FinetuneParams:
    values = dict(
        prior=NO_PRIOR,
        learning_rate=2e-3,
        lr_warmup_steps=2,
        global_batch_size=8,
        per_device_batch_size=4,
        num_epochs=2,
        rerank_max_length=32,
        mixed_precision="fp32",
        logging_steps=1,
        save_steps=2,
    )
    return FinetuneParams(**{**values, **overrides})


def _yaml(base, params: FinetuneParams) -> str:
    """A params.yaml for the CLI: the finetune section and the base model."""
    return yaml.safe_dump({"finetune": params.model_dump(), "model": {"base_model": str(base)}})


class Crash(TrainerCallback):
    """Stands in for a kill right after the checkpoint at ``step`` reached disk."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill after step {self.step}")


@pytest.mark.parametrize(
    "gpu_options", [False, True], ids=["default", "pretokenized-length-grouped"]
)
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_with_the_same_weights(
    tiny_bert_dir, tmp_path, gpu_options
):
    train_file = write_training_set(tmp_path / "prep")
    params = _params(pretokenize=gpu_options, group_by_length=gpu_options)
    run_finetune(
        params,
        train_file,
        tmp_path / "full",
        tmp_path / "ckpt-full",
        tmp_path / "live-full",
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )

    with pytest.raises(KeyboardInterrupt):
        run_finetune(
            params,
            train_file,
            tmp_path / "resumed",
            tmp_path / "ckpt",
            tmp_path / "live",
            callbacks=[Crash(step=4)],
            model=ModelParams(base_model=str(tiny_bert_dir)),
        )
    assert (tmp_path / "ckpt" / "checkpoint-4").is_dir()
    assert not (tmp_path / "resumed").exists(), "no final model from a killed run"

    starts = []

    class RecordStart(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            starts.append(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            starts.append(state.global_step)

    summary = run_finetune(
        params,
        train_file,
        tmp_path / "resumed",
        tmp_path / "ckpt",
        tmp_path / "live",
        callbacks=[RecordStart()],
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    assert starts[1] == 5, "the rerun's first step is step 5"
    assert summary["steps"] == 6
    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name, tensor in full.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


KILL_WHILE_SAVING = """
import os, signal, sys
import torch

save = torch.save

def save_or_die(obj, path, *args, **kwargs):   # the model is on disk, its optimizer state not yet
    if str(path).endswith(os.path.join("checkpoint-4", "optimizer.pt")):
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, path, *args, **kwargs)

torch.save = save_or_die
from reranktune.cli import main
sys.exit(main(["finetune"]))
"""


def test_a_run_killed_while_saving_a_checkpoint_resumes_from_the_last_complete_one(
    tiny_bert_dir, tmp_path, monkeypatch, caplog
):
    """SIGKILL halfway through writing checkpoint-4: the rerun removes it, says so, resumes from
    checkpoint-2 and ends with the weights of a run that was never interrupted."""
    params = _yaml(tiny_bert_dir, _params())
    runs = {}
    for name in ("killed", "full"):
        runs[name] = tmp_path / name
        write_training_set(runs[name] / "data" / "prep")
        (runs[name] / "params.yaml").write_text(params)
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
    }  # as many threads as this process: the same arithmetic
    killed = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_SAVING],
        cwd=runs["killed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = runs["killed"] / "models" / "checkpoints"
    assert (checkpoints / "checkpoint-4" / "model.safetensors").exists()
    assert not is_complete(checkpoints / "checkpoint-4") and is_complete(
        checkpoints / "checkpoint-2"
    )

    monkeypatch.chdir(runs["killed"])
    with caplog.at_level(logging.INFO, logger="reranktune.finetune"):
        assert main(["finetune"]) == 0
    lines = [r.getMessage() for r in caplog.records if "checkpoint-4" in r.getMessage()]
    assert (
        len(lines) == 1 and "incomplete" in lines[0] and "resuming from checkpoint-2" in lines[0]
    ), lines
    monkeypatch.chdir(runs["full"])
    assert main(["finetune"]) == 0

    full = load_file(runs["full"] / "models" / "reranker" / "model.safetensors")
    resumed = load_file(runs["killed"] / "models" / "reranker" / "model.safetensors")
    for name, tensor in full.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_checkpoints_of_another_configuration_are_not_resumed(tiny_bert_dir, tmp_path):
    train_file = write_training_set(tmp_path / "prep")
    with pytest.raises(KeyboardInterrupt):
        run_finetune(
            _params(),
            train_file,
            tmp_path / "m",
            tmp_path / "ckpt",
            tmp_path / "live",
            callbacks=[Crash(step=2)],
            model=ModelParams(base_model=str(tiny_bert_dir)),
        )
    summary = run_finetune(
        _params(learning_rate=1e-3),
        train_file,
        tmp_path / "m",
        tmp_path / "ckpt",
        tmp_path / "live",
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    assert summary["steps"] == 6


def test_validation_split_is_evaluated_and_reported(tiny_bert_dir, tmp_path):
    train_file = write_training_set(tmp_path / "prep")
    val_file = write_training_set(tmp_path / "val", n_queries=8)
    summary = run_finetune(
        _params(num_epochs=1, save_steps=1),
        train_file,
        tmp_path / "m",
        tmp_path / "ckpt",
        tmp_path / "live",
        val_file=val_file,
        model=ModelParams(base_model=str(tiny_bert_dir)),
    )
    assert 0 < summary["best_val_mrr"] <= 1
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert "accuracy@1" in json.dumps(live) and "mrr" in json.dumps(live)


def _loss_curve(live_dir: Path) -> list[float]:
    rows = (live_dir / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[1]) for r in rows]


@pytest.mark.slow
def test_two_processes_give_the_same_loss_curve_as_one(tiny_bert_dir, tmp_path):
    """DDP over gloo with the same global batch: per-step losses agree within 1e-4."""
    curves = {}
    for nproc in (1, 2):
        work = tmp_path / f"n{nproc}"
        train_file = write_training_set(work / "data" / "prep")
        (work / "params.yaml").write_text(
            _yaml(tiny_bert_dir, _params(nproc=nproc, save_steps=1000))
        )
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "reranktune.cli", "finetune"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert train_file.exists()
        curves[nproc] = _loss_curve(work / "metrics" / "finetune")
    assert len(curves[1]) == len(curves[2]) == 6
    assert curves[2] == pytest.approx(curves[1], abs=1e-4)


@pytest.mark.parametrize("with_prior", [False, True], ids=["no-prior", "lexical-prior"])
def test_the_stage_reviews_how_much_the_data_leaves_beyond_the_prior(
    with_prior, tiny_bert_dir, tmp_path, monkeypatch
):
    """metrics/finetune.json: the loss and speed, and with a prior the share of training groups
    it alone already ranks right (the summary's ``prior_alone``)."""
    from reranktune.params import PriorParams

    write_training_set(tmp_path / "data" / "prep")
    prior = PriorParams(dense_weight=0.0, lexical_weight=2.0) if with_prior else NO_PRIOR
    (tmp_path / "params.yaml").write_text(
        _yaml(tiny_bert_dir, _params(prior=prior, num_epochs=1, save_steps=1000))
    )
    monkeypatch.chdir(tmp_path)
    assert main(["finetune"]) == 0
    review = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    summary = json.loads((tmp_path / "models" / "reranker" / "training_summary.json").read_text())
    if not with_prior:
        assert set(review) == {"train_loss", "train_pairs_per_s"}
        assert summary["prior_alone"] is None
        return
    assert set(review) == {"train_loss", "train_pairs_per_s", "prior_ranks_first"}
    assert review["prior_ranks_first"] == summary["prior_alone"]["groups_ranked_first"]
    assert 0 <= review["prior_ranks_first"] <= 1
