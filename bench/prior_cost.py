"""What the prior costs a request of passages the server has never seen, and the ceiling that puts
on serving them.

    python bench/prior_cost.py [--model-dir models/onnx] [--passages 100] [--rounds 7]
        [--out bench/results/prior_cost.json]

In-process on the engine `reranktune serve` loads by default (the export's served variant and its
prior), no HTTP, one request of ``passages`` NQ-UTD passages at a time, as a server that takes
requests in turn scores them. Per request, the seconds of:

- ``cross_encoder``: tokenizing the pairs and their logits, ``deploy.max_batch`` pairs a pass;
- ``bm25``: the prior's lexical half;
- ``embedder_batch_N``: the prior's embedder on the request's passages, N per pass, at its own
  length (the served batch is ``prior.CPU_BATCH`` on a CPU; 64 served before, the baseline);
- ``embedder_at_cross_encoder_length``: the same at the served batch, cut at the cross-encoder's
  maximum length instead.

Each round times every part once, in turn, on another request (so the machine's noise hits them
alike); the median over rounds is reported. Reported per embedder setting: passages/s, its
speed over batch 64, and ``never_seen_ceiling``, cross-encoder / (cross-encoder + bm25 +
embedder): serve's pairs/s with the prior over without it can reach that on never-seen passages
and no more, as both halves run on the same cores whatever the scheduling. Writes
bench/results/prior_cost.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]

from common import machine  # noqa: E402
from serve import QUERIES, corpus_passages, model_folder  # noqa: E402

from reranktune.io import write_json  # noqa: E402

RESULTS = REPO / "bench" / "results" / "prior_cost.json"
BATCHES = (4, 8, 16, 32, 64)
BASELINE_BATCH = 64  # what the prior's encoder ran at before CPU_BATCH


@contextlib.contextmanager
def encoder_settings(encoder, batch_size: int, max_length: int):
    """The prior's encoder (ONNX or PyTorch) at another batch and length, for a while."""
    before = encoder.batch_size, encoder.max_length
    encoder.batch_size, encoder.max_length = batch_size, max_length
    try:
        yield
    finally:
        encoder.batch_size, encoder.max_length = before


def run(
    model_dir: str | None = None,
    passages_per_request: int = 100,
    rounds: int = 7,
    batches: tuple[int, ...] = BATCHES,
    out: Path | None = RESULTS,
) -> dict:
    from reranktune.serve.app import ServeSettings

    passages = corpus_passages()
    with tempfile.TemporaryDirectory(prefix="bench-prior-") as tmp:
        folder, model_note = model_folder(model_dir, Path(tmp))
        engine = ServeSettings(model_dir=str(folder)).load()  # what `reranktune serve` loads
    prior = engine.prior
    if prior is None or prior.encoder is None:
        raise SystemExit(f"{model_note}: the served model has no dense prior to measure")
    encoder, reranker, dense = prior.encoder, engine.reranker, prior.config.dense
    served_batch = encoder.batch_size

    def cross_encoder(query: str, texts: list[str]) -> None:
        engine.score(reranker.encoder.encode([query] * len(texts), texts))

    def bm25(query: str, texts: list[str]) -> None:
        prior.lexical_scores([query] * len(texts), texts)

    def embedder(batch: int, length: int):
        def embed(query: str, texts: list[str]) -> None:
            with encoder_settings(encoder, batch, length):
                encoder([dense.query_prefix + query])
                encoder([dense.passage_prefix + t for t in texts])

        return embed

    settings = {f"embedder_batch_{b}": (b, dense.max_length) for b in batches}
    settings["embedder_at_cross_encoder_length"] = (served_batch, reranker.max_length)
    parts = {
        "cross_encoder": cross_encoder,
        "bm25": bm25,
        **{name: embedder(*setting) for name, setting in settings.items()},
    }
    starts = range(0, len(passages) - passages_per_request + 1, passages_per_request)
    requests = [
        (QUERIES[i % len(QUERIES)], passages[start : start + passages_per_request])
        for i, start in enumerate(starts)
    ]
    for part in parts.values():  # the first calls set up ONNX Runtime's kernels: untimed
        part(*requests[-1])
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    for r in range(rounds):  # each round one request, every part on it in turn
        request = requests[r % len(requests)]
        for name, part in parts.items():
            t0 = time.perf_counter()
            part(*request)
            seconds[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    fixed = median["cross_encoder"] + median["bm25"]
    baseline = median.get(f"embedder_batch_{BASELINE_BATCH}")
    embedders = {
        name: {
            "batch": batch,
            "max_length": length,
            "seconds_per_request": round(median[name], 3),
            "passages_per_s": round(passages_per_request / median[name], 1),
            "over_batch_64": round(baseline / median[name], 2) if baseline else None,
            "never_seen_ceiling": round(median["cross_encoder"] / (fixed + median[name]), 2),
        }
        for name, (batch, length) in settings.items()
    }
    report = {
        "model": model_note,
        "served_variant": reranker.config.onnx.default_variant if reranker.config.onnx else None,
        "prior_encoder": type(encoder).__name__,
        "served_prior_batch": served_batch,
        "passages_per_request": passages_per_request,
        "rounds": rounds,
        "cross_encoder": {
            "max_length": reranker.max_length,
            "batch": engine.batch_size,
            "seconds_per_request": round(median["cross_encoder"], 3),
            "pairs_per_s": round(passages_per_request / median["cross_encoder"], 1),
        },
        "bm25_seconds_per_request": round(median["bm25"], 4),
        "embedder": embedders,
        "machine": machine(),
    }
    if out is not None:
        write_json(out, report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.model_dir, args.passages, args.rounds, out=args.out)
    ce = report["cross_encoder"]
    print(f"cross-encoder: {ce['pairs_per_s']} pairs/s ({ce['seconds_per_request']} s a request)")
    print(f"{'embedder':34} {'passages/s':>10} {'vs 64':>6} {'ceiling':>8}")
    for name, row in report["embedder"].items():
        served = " (served)" if name == f"embedder_batch_{report['served_prior_batch']}" else ""
        print(
            f"{name + served:34} {row['passages_per_s']:>10} {row['over_batch_64'] or '':>6} "
            f"{row['never_seen_ceiling']:>8}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
