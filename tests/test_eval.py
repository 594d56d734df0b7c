import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from conftest import SAMPLE_CORPUS

from reranktune.beir_data import load_beir
from reranktune.evaluation.breakdown import breakdown
from reranktune.evaluation.endpoint import EndpointMismatch, compare_metrics
from reranktune.evaluation.run import (
    EvalOutputs,
    check_endpoint,
    evaluate,
    review_metrics,
    run_eval,
)
from reranktune.evaluation.significance import compare_systems, paired_randomization_test
from reranktune.ir_metrics import per_query_scores, ranking_metrics
from reranktune.params import EmbeddingParams, EvalParams, ModelParams
from reranktune.reranker.model import Reranker
from reranktune.retrieval.first_stage import FirstStageSettings, bm25_retrieval, fuse_runs

QRELS = {"q1": {"d1": 1, "d2": 0, "d3": 2}, "q2": {"d4": 1}, "q3": {"d7": 1}}
# q3 has tied scores: pytrec_eval breaks ties by doc id, and so must MRR's cut-off
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1, "d5": 0.5},
    "q2": {"d6": 0.9, "d4": 0.3},
    "q3": {"d5": 0.5, "d7": 0.5, "d9": 0.5, "d8": 0.7},
}


def _pytrec_mean(measures, run=RUN):
    scores = pytrec_eval.RelevanceEvaluator(QRELS, measures).evaluate(run)
    return lambda m: sum(s[m] for s in scores.values()) / len(scores)


def test_metrics_equal_pytrec_eval_on_a_hand_made_run():
    ours = ranking_metrics(QRELS, RUN, [1, 3, 10], mrr_k=10)
    mean = _pytrec_mean({"ndcg_cut.10", "map_cut.3", "recall.3", "P.1", "recip_rank"})
    assert ours["NDCG"]["NDCG@10"] == pytest.approx(mean("ndcg_cut_10"), abs=1e-5)
    assert ours["MAP"]["MAP@3"] == pytest.approx(mean("map_cut_3"), abs=1e-5)
    assert ours["Recall"]["Recall@3"] == pytest.approx(mean("recall_3"), abs=1e-5)
    assert ours["Precision"]["P@1"] == pytest.approx(mean("P_1"), abs=1e-5)
    # with k=10 nothing is cut: MRR@10 is trec_eval's recip_rank (1, 1/2, 1/3 here)
    assert ours["MRR"]["MRR@10"] == pytest.approx(mean("recip_rank"), abs=1e-5)
    assert ours["MRR"]["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=1e-5)


def test_means_are_beirs_without_beir():
    """Eval no longer imports beir (a GPU box need not carry it); its figures must not move."""
    evaluation = pytest.importorskip("beir.retrieval.evaluation")
    rng = np.random.default_rng(0)
    qrels = {
        f"q{i}": {f"d{j}": int(rng.integers(1, 3)) for j in rng.choice(40, 3, replace=False)}
        for i in range(25)
    }
    run = {
        q: {
            f"d{j}": float(rng.choice([0.5, rng.random()]))
            for j in rng.choice(40, 30, replace=False)
        }
        for q in qrels
        if rng.random() > 0.1
    }
    ours = ranking_metrics(qrels, run, [10, 1, 5, 100])
    ndcg, _map, recall, precision = evaluation.EvaluateRetrieval.evaluate(
        qrels, run, [1, 5, 10, 100], ignore_identical_ids=False
    )
    assert (ours["NDCG"], ours["MAP"], ours["Recall"], ours["Precision"]) == (
        ndcg,
        _map,
        recall,
        precision,
    )


def test_mrr_cut_off_counts_only_the_top_k_with_trec_eval_tie_breaking():
    # q3: d8 (0.7) first, then the 0.5 ties in descending doc id: d9, d7, d5 -> d7 at rank 3
    ours = ranking_metrics(QRELS, RUN, [1], mrr_k=2)["MRR"]["MRR@2"]
    assert ours == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-5)
    assert ranking_metrics(QRELS, RUN, [1], mrr_k=3)["MRR"]["MRR@3"] == pytest.approx(
        (1 + 1 / 2 + 1 / 3) / 3, abs=1e-5
    )


def test_per_query_scores_are_pytrec_eval_per_query():
    ours = per_query_scores(QRELS, RUN, ndcg_k=3, recall_k=2, mrr_k=10)
    theirs = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.3", "recall.2"}).evaluate(RUN)
    for qid in QRELS:
        assert ours[qid]["NDCG@3"] == pytest.approx(theirs[qid]["ndcg_cut_3"])
        assert ours[qid]["Recall@2"] == pytest.approx(theirs[qid]["recall_2"])
    assert [ours[q]["MRR@10"] for q in ("q1", "q2", "q3")] == pytest.approx([1, 1 / 2, 1 / 3])


def test_significance_p_is_one_for_identical_runs_and_small_for_a_clearly_better_one():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.7, size=50)
    assert paired_randomization_test(base, base) == pytest.approx(1.0)
    better = np.clip(base + 0.15 + rng.normal(0, 0.05, size=50), 0, 1)
    assert paired_randomization_test(better, base) < 0.05
    # a difference that is pure noise is not significant
    noisy = base + rng.normal(0, 0.05, size=50)
    assert paired_randomization_test(noisy, base) > 0.05
    with pytest.raises(ValueError, match="equally long"):
        paired_randomization_test([0.1, 0.2], [0.1])


def test_compare_systems_pairs_queries_by_id():
    per_query = {
        "a": {f"q{i}": {"NDCG@10": 0.9} for i in range(30)},
        "b": {f"q{i}": {"NDCG@10": 0.2 + 0.01 * i} for i in range(30)},
    }
    out = compare_systems(per_query, [("a", "b"), ("a", "a")], "NDCG@10")
    assert out["a_vs_b"]["p_value"] < 0.05 and out["a_vs_b"]["delta"] > 0.4
    assert out["a_vs_b"]["queries"] == 30
    assert out["a_vs_a"]["p_value"] == pytest.approx(1.0) and out["a_vs_a"]["delta"] == 0


def test_reciprocal_rank_fusion_sums_inverse_ranks():
    dense = {"q": {"a": 0.9, "b": 0.8, "c": 0.1}}
    sparse = {"q": {"c": 12.0, "a": 3.0, "d": 1.0}}
    fused = fuse_runs([dense, sparse], top_k=3, k=60)["q"]
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert list(fused) == ["a", "c", "b"]  # d (1/63 alone) falls outside the top 3


def test_breakdown_groups_queries_by_metadata():
    per_query = {"s": {"q1": {"m": 1.0}, "q2": {"m": 0.0}, "q3": {"m": 0.5}}}
    metadata = {
        "q1": {"hop_count": 1},
        "q2": {"hop_count": 2},
        "q3": {"hop_count": 2, "query_type": ""},
    }
    out = breakdown(per_query, metadata, ["hop_count", "query_type", "absent"], "m")
    assert out == {"hop_count": {"1": {"queries": 1, "s": 1.0}, "2": {"queries": 2, "s": 0.25}}}


def test_endpoint_tolerances_depend_on_the_cut_off():
    checkpoint = {"NDCG": {"NDCG@1": 0.50, "NDCG@5": 0.60}, "MRR": {"MRR@10": 0.4}}
    endpoint = {"NDCG": {"NDCG@1": 0.52, "NDCG@5": 0.615}, "MRR": {"MRR@10": 0.405}}
    rows = {r["metric"]: r for r in compare_metrics(checkpoint, endpoint)}
    assert rows["NDCG@1"]["ok"] and rows["MRR@10"]["ok"]
    assert not rows["NDCG@5"]["ok"] and rows["NDCG@5"]["abs_diff"] == pytest.approx(0.015)


# --- on a small real BEIR folder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory) -> Path:
    """24 Python reference pages; one query per page for 20 of them, with metadata on most."""
    folder = tmp_path_factory.mktemp("beir")
    pages = sorted((SAMPLE_CORPUS / "python").glob("*.txt"))[:24]
    with open(folder / "corpus.jsonl", "w") as fh:
        for page in pages:
            fh.write(
                json.dumps({"_id": page.stem, "title": page.stem, "text": page.read_text()[:1500]})
                + "\n"
            )
    (folder / "qrels").mkdir()
    with open(folder / "queries.jsonl", "w") as q, open(folder / "qrels" / "test.tsv", "w") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for i, page in enumerate(pages[:20]):
            meta = (
                {"query_type": ["contextual", "multi_hop"][i % 2], "hop_count": 1 + i % 2}
                if i < 16
                else {}
            )
            text = f"python {page.stem.replace('-', ' ')} statement"
            q.write(json.dumps({"_id": f"q{i}", "text": text, "metadata": meta}) + "\n")
            r.write(f"q{i}\t{page.stem}\t1\n")
    return folder


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def test_bm25_finds_the_page_a_query_names(beir_dir):
    data = load_beir(beir_dir)
    run = bm25_retrieval(data, top_k=5)
    assert all(len(docs) == 5 for docs in run.values())
    hits = sum(max(docs, key=docs.get) in data.qrels[qid] for qid, docs in run.items())
    assert hits >= 15, hits


def test_evaluate_reports_every_first_stage_and_both_rerankers(beir_dir, tiny_bert_dir):
    data = load_beir(beir_dir)
    params = EvalParams(top_k=8, k_values=[1, 5, 8], significance_resamples=1000)
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=128)
    result = evaluate(
        data,
        params,
        FirstStageSettings("hybrid", EmbeddingParams(), top_k=8),
        finetuned=reranker,
        base=reranker,
    )
    metrics = result.metrics
    for name in ("dense", "bm25", "hybrid", "base", "finetuned"):
        assert set(metrics[name]) == {"NDCG", "MAP", "Recall", "Precision", "MRR"}, name
        assert set(metrics[name]["Precision"]) == {"P@1", "P@5", "P@8"}
    # reranking only reorders the same candidates (hybrid's, the default): recall at the full depth
    # is unchanged
    assert metrics["finetuned"]["Recall"]["Recall@8"] == metrics["hybrid"]["Recall"]["Recall@8"]
    # the same model twice: identical runs, p = 1
    assert metrics["significance"]["finetuned_vs_base"]["p_value"] == pytest.approx(1.0)
    assert 0 <= metrics["significance"]["finetuned_vs_hybrid"]["p_value"] <= 1
    assert metrics["breakdown"]["hop_count"]["2"]["queries"] == 8
    assert set(metrics["breakdown"]["query_type"]) == {"contextual", "multi_hop"}
    assert len(result.per_query["finetuned"]) == 20
    speed = metrics["rerank_speed"][
        "finetuned"
    ]  # how fast eval reranked, to hold against the GPU bench
    assert speed["pairs"] == 20 * 8 and speed["pairs_per_s"] > 0 and speed["device"] == "cpu"


def test_the_verdict_names_the_best_untrained_system_and_says_when_the_reranker_does_not_beat_it(
    beir_dir, tiny_bert_dir
):
    data = load_beir(beir_dir)
    params = EvalParams(top_k=8, k_values=[1, 5, 8], significance_resamples=1000)
    random_head = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=128)
    result = evaluate(
        data, params, FirstStageSettings("bm25", EmbeddingParams(), top_k=8), finetuned=random_head
    )
    mean = {
        n: np.mean([s["NDCG@10"] for s in result.per_query[n].values()])
        for n in ("dense", "bm25", "hybrid")
    }
    best = max(mean, key=mean.get)
    verdict = result.verdict
    assert verdict["best_baseline"] == best and best != "bm25"  # MiniLM knows these pages better
    assert not verdict["beats_best_baseline"]  # a random head cannot beat it
    assert f"DOES NOT beat the best untrained system, {best}" in verdict["line"]
    assert f"set retrieval.first_stage: {best}" in verdict["line"]
    finetuned = np.mean([s["NDCG@10"] for s in result.per_query["finetuned"].values()])
    assert verdict["gain"] == pytest.approx(finetuned - mean[best], abs=1e-4)


def _outputs(folder):
    return EvalOutputs(
        folder / "eval.json",
        folder / "details.json",
        folder / "plots.json",
        folder / "per_query.tsv",
        folder / "report.md",
    )


def test_run_eval_writes_a_section_per_test_set_and_a_short_review(
    beir_dir, tiny_bert_dir, minilm_path, tmp_path
):
    questions = tmp_path / "questions"
    shutil.copytree(beir_dir, questions / "human")
    (questions / "README.md").write_text("not a test set")
    params = EvalParams(
        questions_dir=str(questions),
        data_path=str(beir_dir),
        top_k=8,
        k_values=[1, 5, 8],
        significance_resamples=1000,
    )
    out = tmp_path / "metrics"
    review = run_eval(
        params, tiny_bert_dir, _outputs(out), model=ModelParams(base_model=minilm_path)
    )
    assert json.loads((out / "eval.json").read_text()) == review
    assert list(review) == [
        "human"
    ]  # prep's generated split stands in only where no real question exists
    for section in review.values():
        assert set(section) == {
            "dense",
            "bm25",
            "hybrid",
            "finetuned",
            "gain_over_best_baseline",
            "p_value",
        }
        assert set(section["finetuned"]) == {
            "NDCG@8",
            "Recall@8",
            "MRR@10",
        }  # @10 and @100 not measured here
    details = json.loads((out / "details.json").read_text())
    # MiniLM as a sequence classifier has a new, random head: its reranking is skipped, with a note
    assert "base" not in details["human"] and "no trained ranking head" in " ".join(
        details["human"]["notes"]
    )
    assert set(details["human"]["finetuned"]["NDCG"]) == {"NDCG@1", "NDCG@5", "NDCG@8"}
    plots = json.loads((out / "plots.json").read_text())
    assert {row["model"] for row in plots} == {
        f"human/{n}" for n in ("dense", "bm25", "hybrid", "finetuned")
    }
    lines = (out / "per_query.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["query_id", "system", "MRR@10", "NDCG@10", "Recall@8"]
    assert len(lines) == 1 + 4 * 20
    report = (out / "report.md").read_text()
    assert "### Real questions: human" in report and "### Synthetic questions" not in report
    assert "| finetuned (reranks hybrid) |" in report and "finetuned vs hybrid" in report
    assert "hop_count=2" in report and "DOES NOT beat the best untrained system" in report


def test_without_real_questions_eval_has_the_synthetic_section_only(
    beir_dir, tiny_bert_dir, minilm_path, tmp_path
):
    params = EvalParams(
        questions_dir=str(tmp_path / "none"),
        data_path=str(beir_dir),
        top_k=8,
        k_values=[1, 5, 8],
        significance_resamples=1000,
        compare_first_stages=False,
        evaluate_base="never",
    )
    review = run_eval(
        params, tiny_bert_dir, _outputs(tmp_path), model=ModelParams(base_model=minilm_path)
    )
    assert list(review) == ["synthetic"] and set(review["synthetic"]) == {
        "hybrid",
        "finetuned",
        "gain_over_best_baseline",
        "p_value",
    }


class _RankingHandler(BaseHTTPRequestHandler):
    reranker: Reranker
    noise: float = 0.0

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "tiny-reranker"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/ranking" or body.get("model") != "tiny-reranker":
            self._send(404, {"error": f"unknown path or model {body.get('model')}"})
            return
        passages = [p["text"] for p in body["passages"]]
        logits = self.reranker.score([body["query"]["text"]] * len(passages), passages)
        if self.noise:
            rng = np.random.default_rng(len(body["query"]["text"]))
            logits = [x + float(rng.normal(0, self.noise)) for x in logits]
        order = sorted(range(len(logits)), key=lambda i: -logits[i])
        self._send(200, {"rankings": [{"index": i, "logit": logits[i]} for i in order]})

    def log_message(self, *args):
        pass


@pytest.fixture
def ranking_server(tiny_bert_dir):
    servers = []

    def start(noise: float) -> str:
        handler = type(
            "Handler",
            (_RankingHandler,),
            {
                "reranker": Reranker.from_pretrained(
                    str(tiny_bert_dir), device="cpu", max_length=128
                ),
                "noise": noise,
            },
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_endpoint_check_passes_with_the_same_model_and_fails_with_noise(
    beir_dir, tiny_bert_dir, ranking_server
):
    data = load_beir(beir_dir)
    params = EvalParams(
        top_k=8, k_values=[1, 5, 8], compare_first_stages=False, significance_resamples=1000
    )
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=128)
    result = evaluate(
        data, params, FirstStageSettings("hybrid", EmbeddingParams(), top_k=8), finetuned=reranker
    )
    candidates, checkpoint = result.runs["hybrid"], result.metrics["finetuned"]

    same = params.model_copy(update={"endpoint_url": ranking_server(0.0)})
    summary, rows = check_endpoint(data, same, candidates, checkpoint)
    assert summary["passed"], rows
    assert summary["model"] == "tiny-reranker" and summary["max_abs_diff"] < 1e-3

    noisy = params.model_copy(update={"endpoint_url": ranking_server(5.0)})
    summary, rows = check_endpoint(data, noisy, candidates, checkpoint)
    assert not summary["passed"] and summary["failed_metrics"]
    assert all(
        r["abs_diff"] > r["tolerance"] for r in rows if r["metric"] in summary["failed_metrics"]
    )


def test_run_eval_fails_with_a_table_when_the_endpoint_differs(
    beir_dir, tiny_bert_dir, ranking_server, tmp_path
):
    params = EvalParams(
        questions_dir=str(tmp_path / "none"),
        data_path=str(beir_dir),
        top_k=8,
        k_values=[1, 5, 8],
        compare_first_stages=False,
        evaluate_base="never",
        significance_resamples=1000,
        endpoint_url=ranking_server(5.0),
    )
    out = tmp_path / "metrics"
    with pytest.raises(EndpointMismatch, match=r"\| metric \| checkpoint \| endpoint \| abs diff"):
        run_eval(params, tiny_bert_dir, _outputs(out), model=ModelParams(base_model="unused"))
    details = json.loads((out / "details.json").read_text())
    assert details["synthetic"]["endpoint"]["passed"] is False
    assert "Endpoint check FAILED" in (out / "report.md").read_text()


def test_rerank_only_reorders_the_candidates(beir_dir, tiny_bert_dir):
    data = load_beir(beir_dir)
    candidates = {q: dict.fromkeys(list(data.corpus)[:3], 0.0) for q in list(data.queries)[:2]}
    run = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu").rerank(
        data, candidates, batch_size=2
    )
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in candidates.items()}


def test_cli_overrides_reach_the_eval_params(monkeypatch):
    from reranktune import cli, stages

    seen = {}
    monkeypatch.setattr(stages, "eval", lambda params_file, **overrides: seen.update(overrides))
    assert cli.main(["eval", "--endpoint-url", "http://127.0.0.1:9", "--first-stage", "bm25"]) == 0
    assert seen == {"endpoint_url": "http://127.0.0.1:9", "first_stage": "bm25"}


def test_the_stage_script_takes_the_same_overrides():
    """stages/eval.py (run_stage), which DVC runs, parses the options `reranktune eval` takes."""
    from reranktune.stage_cli import run_stage

    seen = {}

    def eval(params_file, **overrides):  # noqa: A001 - run_stage reads the stage's name off the function
        seen.update(overrides, params_file=params_file)

    assert run_stage(eval, ["--params", "p.yaml", "--data-path", "d", "--questions-dir", "q"]) == 0
    assert seen == {"params_file": "p.yaml", "data_path": "d", "questions_dir": "q"}


def test_two_runs_compare_query_by_query_from_their_per_query_files(tmp_path):
    from reranktune.evaluation.compare import compare_files
    from reranktune.evaluation.run import write_per_query
    from reranktune.io import InputError

    rng = np.random.default_rng(1)
    old = {
        "human": {
            "finetuned": {
                f"q{i}": {"NDCG@10": float(x), "MRR@10": 0.5}
                for i, x in enumerate(rng.uniform(0, 0.6, 40))
            }
        }
    }
    new = {
        "human": {
            "finetuned": {
                q: {**s, "NDCG@10": s["NDCG@10"] + 0.3}
                for q, s in old["human"]["finetuned"].items()
            }
        }
    }
    write_per_query(tmp_path / "old.tsv", old)
    write_per_query(tmp_path / "new.tsv", new)
    same = compare_files(tmp_path / "old.tsv", tmp_path / "old.tsv")
    assert same["delta"] == 0 and same["p_value"] == pytest.approx(1.0)
    better = compare_files(tmp_path / "old.tsv", tmp_path / "new.tsv")
    assert (
        better["delta"] == pytest.approx(0.3, abs=1e-4)
        and better["p_value"] < 0.05
        and better["queries"] == 40
    )
    with pytest.raises(InputError, match="no rows for system 'base'"):
        compare_files(tmp_path / "old.tsv", tmp_path / "new.tsv", system="base")
    assert (
        compare_files(tmp_path / "old.tsv", tmp_path / "new.tsv", system="human/finetuned")
        == better
    )
    (tmp_path / "bad.tsv").write_text(
        "query_id\tsystem\tNDCG@10\nq0\thuman/finetuned\tnot-a-number\n"
    )
    with pytest.raises(InputError, match="bad.tsv: line 2"):
        compare_files(tmp_path / "bad.tsv", tmp_path / "new.tsv")
    from reranktune import cli

    assert cli.main(["compare", str(tmp_path / "old.tsv"), str(tmp_path / "new.tsv")]) == 0
    assert cli.main(["compare", str(tmp_path / "bad.tsv"), str(tmp_path / "new.tsv")]) == 2


def test_a_reranker_with_a_prior_is_judged_against_its_prior_alone_and_shows_its_cross_encoder_alone(  # noqa: E501
    beir_dir, tiny_bert_with_prior_dir
):
    data = load_beir(beir_dir)
    params = EvalParams(top_k=8, k_values=[1, 5, 8], significance_resamples=1000)
    reranker = Reranker.from_pretrained(str(tiny_bert_with_prior_dir), device="cpu")
    result = evaluate(
        data, params, FirstStageSettings("hybrid", EmbeddingParams(), top_k=8), finetuned=reranker
    )
    qid, docs = next(iter(result.runs["finetuned"].items()))
    for did, score in docs.items():  # the shipped score is exactly its two parts added
        assert score == pytest.approx(
            result.runs["prior"][qid][did] + result.runs["crossencoder"][qid][did]
        )
    untrained = ("dense", "bm25", "hybrid", "prior")
    mean = {n: np.mean([s["NDCG@10"] for s in result.per_query[n].values()]) for n in untrained}
    assert result.verdict["best_baseline"] == max(mean, key=mean.get)
    assert {"finetuned_vs_prior", "crossencoder_vs_dense", "crossencoder_vs_bm25"} <= set(
        result.metrics["significance"]
    )
    review = review_metrics(result.metrics, params)
    assert set(review["prior"]) == set(review["crossencoder"]) == {"NDCG@8"}


def test_rank_orders_passages_by_score_and_keeps_the_top_n(tiny_bert_dir):
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu")
    passages = [
        "VACUUM reclaims storage.",
        "A cursor.",
        "Indexes speed up reads.",
        "Roles grant access.",
    ]
    scores = reranker.score(["what does vacuum do"] * len(passages), passages)
    ranked = reranker.rank("what does vacuum do", passages)
    assert [r.index for r in ranked] == sorted(range(4), key=lambda i: -scores[i])
    assert [r.score for r in ranked] == pytest.approx(sorted(scores, reverse=True))
    assert reranker.rank("what does vacuum do", passages, top_n=2) == ranked[:2]
