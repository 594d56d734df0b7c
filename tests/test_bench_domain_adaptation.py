"""bench/domain_adaptation.py on a tiny BEIR folder: the recipe is params.yaml's, real queries stay
unseen.

Also bench/rerank_depth.py, which sweeps rerank depth and prior scale for a trained reranker."""

import importlib.util
import json

import pytest
import yaml
from conftest import REPO
from fake_llm import FakeLLM

from reranktune.training_file import read_training_file

SECRET_WORD = "quetzalcoatlus"  # only in a real test query: training must never see it
TOPICS = ["vacuum", "index", "trigger", "sequence", "schema", "cursor", "lambda", "decorator"]


def load_bench(name: str = "domain_adaptation"):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def beir_dir(tmp_path):
    folder = tmp_path / "tiny_beir"
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {
            "_id": f"d{i}",
            "title": f"The {topic} guide",
            "text": f"The {topic} command changes how {topic} objects behave. "
            f"Use {topic} with care in "
            f"production systems. Each {topic} has options documented in chapter {i}.",
        }
        for i, topic in enumerate(TOPICS)
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [
        {"_id": f"q{i}", "text": f"how do I use {topic} {SECRET_WORD}"}
        for i, topic in enumerate(TOPICS)
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS)))
    )
    return folder


def bench_args(tmp_path, tiny_bert_dir, *extra: str) -> list[str]:
    return [
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "result.json"),
        "--params",
        f"model.base_model={tiny_bert_dir}",
        "finetune.mixed_precision=fp32",
        "eval.top_k=5",
        "eval.k_values=[1,5,10]",
        "eval.significance_resamples=200",
        "eval.mixed_precision=fp32",
        *extra,
    ]


def test_bench_uses_params_yaml_and_never_shows_real_queries_to_training(
    beir_dir, tiny_bert_dir, tmp_path
):
    bench = load_bench()
    record = tmp_path / "runs.json"
    result = bench.main(
        [
            str(beir_dir),
            *bench_args(tmp_path, tiny_bert_dir),
            "--run-id",
            "tiny_beir/smoke",
            "--change",
            "a smoke test",
            "--record",
            str(record),
        ]
    )

    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    used = result["params"]
    for key in (
        "learning_rate",
        "global_batch_size",
        "rerank_max_length",
        "num_epochs",
        "distillation_weight",
        "prior",
    ):
        assert used["finetune"][key] == shipped["finetune"][key], key
    for key in ("hard_negatives_to_mine", "hard_negatives_sample_from", "hard_neg_margin"):
        assert used["prep"][key] == shipped["prep"][key], key
    assert used["eval"]["significance_k"] == shipped["eval"]["significance_k"]
    for key in ("first_stage", "rrf_k", "bm25_language"):
        assert used["retrieval"][key] == shipped["retrieval"][key], key
    assert used["retrieval"]["embedding"]["model"] == shipped["retrieval"]["embedding"]["model"]
    assert used["prep"]["quality_threshold"] == bench.CORPUS_OVERRIDES["prep"]["quality_threshold"]

    systems = result[
        "systems"
    ]  # the eval stage's review numbers: every first stage, then the reranker
    assert set(systems) == {
        "dense",
        "bm25",
        "hybrid",
        "prior",
        "crossencoder",
        "finetuned",  # params.yaml has a prior
        "gain_over_best_baseline",
        "p_value",
    }
    assert 0 <= systems["finetuned"]["NDCG@10"] <= 1 and 0 <= systems["p_value"] <= 1
    verdict = result["verdict"]
    assert verdict["best_baseline"] in ("dense", "bm25", "hybrid") and verdict["line"]
    assert systems["gain_over_best_baseline"] == pytest.approx(
        systems["finetuned"]["NDCG@10"] - systems[verdict["best_baseline"]]["NDCG@10"], abs=1e-4
    )
    assert result["queries"] == len(TOPICS) and result["prep"]["pseudo_queries_generated"] > 0
    assert json.loads((tmp_path / "result.json").read_text())["dataset"] == "tiny_beir"
    for name in ("sdg.jsonl", "prep/train.json"):
        assert SECRET_WORD not in (tmp_path / "work" / name).read_text(), name

    [run] = json.loads(
        record.read_text()
    )  # the run record: the report under its id, its --params as settings
    assert (
        run["id"] == "tiny_beir/smoke"
        and run["dataset"] == "tiny_beir"
        and run["change"] == "a smoke test"
    )
    assert run["result"] == result and run["settings"]["eval.k_values"] == [1, 5, 10]


def test_several_seeds_are_averaged_per_query_before_the_paired_tests(
    beir_dir, tiny_bert_dir, tmp_path
):
    bench = load_bench()
    result = bench.main([str(beir_dir), *bench_args(tmp_path, tiny_bert_dir, "bench.seeds=[1,2]")])
    per_seed = result["per_seed"]
    assert sorted(per_seed) == ["1", "2"]
    for system in ("finetuned", "crossencoder", "hybrid"):
        seeds = [per_seed[s]["systems"][system]["NDCG@10"] for s in ("1", "2")]
        assert result["systems"][system]["NDCG@10"] == pytest.approx(sum(seeds) / 2, abs=1e-4)
    # one model per seed on the same training file
    assert (tmp_path / "work" / "model_seed1").is_dir() and (
        tmp_path / "work" / "model_seed2"
    ).is_dir()
    assert per_seed["1"]["finetune"]["train_records"] == per_seed["2"]["finetune"]["train_records"]
    test = result["significance"]["finetuned_vs_prior"]
    assert test["mean_finetuned"] == pytest.approx(
        result["systems"]["finetuned"]["NDCG@10"], abs=1e-4
    )
    assert result["verdict"]["p_value"] == result["systems"]["p_value"]


def test_real_query_folds_rank_each_question_by_a_model_that_never_trained_on_it(
    beir_dir, tiny_bert_dir, tmp_path
):
    bench = load_bench()
    result = bench.main(
        [str(beir_dir), *bench_args(tmp_path, tiny_bert_dir, "bench.real_query_folds=2")]
    )
    queries = {
        q["_id"]: q["text"]
        for q in map(json.loads, (beir_dir / "queries.jsonl").read_text().splitlines())
    }
    dealt = bench.folds(sorted(queries), 2, result["params"]["finetune"]["seed"])
    assert sorted(q for fold in dealt for q in fold) == sorted(queries)
    assert [f["queries"] for f in result["per_fold"]] == [len(fold) for fold in dealt]
    for f, held_out in enumerate(dealt):
        training = read_training_file(tmp_path / "work" / f"fold{f}" / "prep" / "train.json")
        trained_on = {r["question"] for r in training.records}
        # prep holds one document out as its test split: at most one question (bundle) with it
        others = {queries[q] for q in queries if q not in held_out}
        assert trained_on <= others and len(trained_on) >= len(others) - 1
        assert len(trained_on) == result["per_fold"][f]["prep"]["queries_per_split"]["train"]
        for record in training.records:  # the judged document is its positive, never a negative
            guide = f"The {record['question'].split()[4]} guide"
            [positive] = record["pos_doc"]
            assert training.corpus[positive["id"]].startswith(guide)
            assert not any(training.corpus[n["id"]].startswith(guide) for n in record["neg_doc"])
    assert result["queries"] == len(queries)  # every question judged once, the folds pooled
    assert 0 <= result["systems"]["finetuned"]["NDCG@10"] <= 1


@pytest.mark.parametrize(
    "extra", [["bench.real_query_folds=1"], ["bench.real_query_folds=2", "bench.seeds=[1,2]"]]
)
def test_real_query_folds_refuse_one_fold_and_several_seeds(
    beir_dir, tiny_bert_dir, tmp_path, extra
):
    from reranktune.io import InputError

    with pytest.raises(InputError, match="real_query_folds"):
        load_bench().main([str(beir_dir), *bench_args(tmp_path, tiny_bert_dir, *extra)])


def test_a_run_id_names_its_dataset(beir_dir, tmp_path):
    from reranktune.io import InputError

    with pytest.raises(InputError, match="expected tiny_beir/"):
        load_bench().main([str(beir_dir), "--run-id", "R", "--record", str(tmp_path / "runs.json")])


def test_bench_can_generate_with_the_llm_endpoint(beir_dir, tiny_bert_dir, tmp_path):
    with FakeLLM() as server:
        result = load_bench().main(
            [
                str(beir_dir),
                *bench_args(
                    tmp_path,
                    tiny_bert_dir,
                    "sdg.generator=llm",
                    "prep.quality_threshold=1",
                    "sdg.llm="
                    + json.dumps(
                        {
                            "base_url": server.base_url,
                            "api_key_env": None,
                            "requests_per_minute": None,
                            "dedup_embeddings": "provider",
                        }
                    ),
                ),
            ]
        )
        assert server.calls, "the endpoint was never called"
    assert result["params"]["sdg"]["generator"] == "llm"
    questions = [
        json.loads(line) for line in (tmp_path / "work" / "sdg.jsonl").read_text().splitlines()
    ]
    assert any("in case" in p["question"] for r in questions for p in r["deduplicated_qa_pairs"])
    assert result["systems"]["finetuned"]["NDCG@10"] >= 0


def test_unknown_bench_key_is_named(beir_dir, tmp_path):
    from reranktune.io import InputError

    with pytest.raises(InputError, match="unknown bench key"):
        load_bench().main([str(beir_dir), "--params", "bench.rerank_depth=5"])


def test_nested_overrides_reach_their_key_and_leave_siblings():
    config = {"finetune": {"prior": {"dense_weight": 10.0, "lexical_weight": 10.0}}, "bench": {}}
    load_bench().apply_overrides(
        config, ["finetune.prior.dense_weight=20", "finetune.learning_rate=0.0001"]
    )
    assert config["finetune"] == {
        "prior": {"dense_weight": 20, "lexical_weight": 10.0},
        "learning_rate": 0.0001,
    }


@pytest.fixture
def rerank_depth(monkeypatch):
    monkeypatch.syspath_prepend(
        str(REPO / "bench")
    )  # it imports its helpers from domain_adaptation
    return load_bench("rerank_depth")


def test_depth_sweep_matches_the_reranker_and_depth_one_is_the_first_stage(
    rerank_depth, beir_dir, tiny_bert_with_prior_dir, tmp_path
):
    from reranktune.beir_data import load_beir
    from reranktune.ir_metrics import per_query_scores
    from reranktune.reranker.model import Reranker
    from reranktune.retrieval.first_stage import first_stage_runs

    record = tmp_path / "runs.json"
    record.write_text(json.dumps([{"id": "tiny_beir/trained", "dataset": "tiny_beir"}]))
    result = rerank_depth.main(
        [
            str(beir_dir),
            str(tiny_bert_with_prior_dir),
            "--depths",
            "1",
            "5",
            "--prior-scales",
            "0",
            "0.5",
            "--out",
            str(tmp_path / "depth.json"),
            "--run-id",
            "tiny_beir/trained",
            "--record",
            str(record),
        ]
    )
    [run] = json.loads(record.read_text())  # the sweep joins the run that trained the model
    assert run["id"] == "tiny_beir/trained" and run["rerank_depth"]["result"] == result

    settings = {(s["depth"], s["prior_scale"]): s for s in result["settings"]}
    assert set(settings) == {(d, w) for d in (1, 5) for w in (0.0, 0.5, 1.0, None)}
    assert [s["prior_only"] for s in result["settings"]].count(True) == 2
    assert [w for (d, w), s in settings.items() if s["trained"]] == [1.0, 1.0]
    reranked = result["first_stages"][result["reranked_first_stage"]]
    for scale in (0.0, 0.5, 1.0, None):  # reranking only the top 1 leaves the first stage's order
        assert settings[1, scale]["NDCG@10"] == pytest.approx(reranked, abs=1e-5)

    # logit + prior split apart and added back at scale 1 is exactly what Reranker scores
    data = load_beir(beir_dir)
    _, first_stage = rerank_depth.first_stage_settings(REPO / "params.yaml")
    candidates = first_stage_runs(data, [first_stage.name], first_stage.with_top_k(5))[
        first_stage.name
    ]
    reranker = Reranker.from_pretrained(str(tiny_bert_with_prior_dir), bf16=False)
    direct = per_query_scores(data.qrels, reranker.rerank(data, candidates), 10, 5, 10)
    assert settings[5, 1.0]["NDCG@10"] == pytest.approx(
        sum(s["NDCG@10"] for s in direct.values()) / len(direct), abs=1e-5
    )
    assert json.loads((tmp_path / "depth.json").read_text())["best_first_stage"] in (
        "dense",
        "bm25",
        "hybrid",
    )


def test_depth_sweep_refuses_prior_scales_for_a_reranker_without_a_prior(
    rerank_depth, beir_dir, tiny_bert_dir
):
    from reranktune.io import InputError

    with pytest.raises(InputError, match="has no prior"):
        rerank_depth.main([str(beir_dir), str(tiny_bert_dir), "--prior-scales", "2"])
