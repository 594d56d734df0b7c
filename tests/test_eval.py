import pytest
import pytrec_eval

from reranktune.evaluation.metrics import ranking_metrics


def test_metrics_equal_pytrec_eval_on_a_hand_made_run():
    qrels = {"q1": {"d1": 1, "d2": 0, "d3": 2}, "q2": {"d4": 1}}
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1, "d5": 0.5}, "q2": {"d6": 0.9, "d4": 0.3}}
    ours = ranking_metrics(qrels, run, [1, 3, 10])
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.3", "recall.3", "P.1"})
    scores = evaluator.evaluate(run)
    mean = lambda m: sum(s[m] for s in scores.values()) / len(scores)  # noqa: E731
    assert ours["NDCG"]["NDCG@10"] == pytest.approx(mean("ndcg_cut_10"), abs=1e-5)
    assert ours["NDCG"]["NDCG@10"] == pytest.approx(0.66921, abs=1e-5)
    assert ours["MAP"]["MAP@3"] == pytest.approx(mean("map_cut_3"), abs=1e-5)
    assert ours["Recall"]["Recall@3"] == pytest.approx(mean("recall_3"), abs=1e-5)
    assert ours["Precision"]["P@1"] == pytest.approx(mean("P_1"), abs=1e-5)
