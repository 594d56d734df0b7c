"""The ranking API served for real (uvicorn on 127.0.0.1) on an ONNX export of a tiny model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import httpx
import pytest
from serve_helpers import ServerThread, export_folder, wait_ready

from reranktune.reranker.model import Reranker
from reranktune.serve.app import ServeSettings, create_app

MAX_LENGTH = 64
QUERY = "how does vacuum reclaim storage"
PASSAGES = [
    "VACUUM reclaims storage occupied by dead tuples.",
    "Lambda expressions create small anonymous functions.",
    "x",
    "",
    "The autovacuum daemon automates the execution of VACUUM and ANALYZE commands. "
    * 12,  # over max_length
    "Indexes speed up queries but add write overhead.",
    "Ünïcödé passage: 日本語のテキスト 🙂",
    "vacuum vacuum vacuum",
]


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert_dir, tmp_path_factory):
    return export_folder(tiny_bert_dir, tmp_path_factory.mktemp("onnx"), MAX_LENGTH)


@pytest.fixture(scope="module")
def settings(onnx_dir) -> ServeSettings:
    return ServeSettings(
        model_dir=str(onnx_dir),
        model_name="tiny",
        batching=True,
        max_batch=16,
        max_wait_ms=50,
        max_passages=50,
        max_body_bytes=64 * 1024,
        max_tokens_per_request=2000,
    )


@pytest.fixture(scope="module")
def server(settings):
    app = create_app(settings)
    with ServerThread(app) as srv:
        wait_ready(srv.url)
        srv.app = app
        yield srv


def rank(url: str, passages, query=QUERY, truncate="END", model="tiny") -> httpx.Response:
    body = {
        "model": model,
        "query": {"text": query},
        "passages": [{"text": p} for p in passages],
        "truncate": truncate,
    }
    return httpx.post(f"{url}/v1/ranking", json=body, timeout=30)


def test_ranking_follows_the_models_scores(server, tiny_bert_dir):
    response = rank(server.url, PASSAGES)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["rankings"]
    rankings = body["rankings"]
    assert all(list(r) == ["index", "logit"] for r in rankings)
    assert all(type(r["index"]) is int and type(r["logit"]) is float for r in rankings)
    assert sorted(r["index"] for r in rankings) == list(range(len(PASSAGES)))
    logits = [r["logit"] for r in rankings]
    assert logits == sorted(logits, reverse=True)

    reference = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=MAX_LENGTH)
    expected = reference.score([QUERY] * len(PASSAGES), PASSAGES)
    assert [r["index"] for r in rankings] == sorted(
        range(len(PASSAGES)), key=lambda i: -expected[i]
    )
    for r in rankings:
        assert r["logit"] == pytest.approx(expected[r["index"]], abs=1e-4)


def test_truncate_none_rejects_an_over_long_pair(server):
    response = rank(server.url, PASSAGES, truncate="NONE")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "passages[4]" in detail and str(MAX_LENGTH) in detail and "END" in detail
    short = [p for p in PASSAGES if len(p) < 100]
    assert rank(server.url, short, truncate="NONE").status_code == 200
    default = httpx.post(
        f"{server.url}/v1/ranking",
        timeout=30,
        json={  # truncate defaults to NONE
            "model": "tiny",
            "query": {"text": QUERY},
            "passages": [{"text": PASSAGES[4]}],
        },
    )
    assert default.status_code == 400


def test_models_and_health(server):
    assert httpx.get(f"{server.url}/v1/models").json() == {
        "object": "list",
        "data": [{"id": "tiny", "object": "model", "owned_by": "reranktune"}],
    }
    assert httpx.get(f"{server.url}/v1/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v1/health/ready").status_code == 200
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/ranking", "/v1/models", "/v1/health/live", "/v1/health/ready"} <= set(
        schema["paths"]
    )


def test_concurrent_requests_share_batches_and_get_their_own_scores(server):
    groups = [
        [f"passage {i}-{j} about vacuum and storage" + " words" * (i + j) for j in range(3)]
        for i in range(8)
    ]
    alone = [rank(server.url, g).json()["rankings"] for g in groups]
    batcher = server.app.state.serve.batcher
    before = batcher.batches

    async def all_at_once():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        f"{server.url}/v1/ranking",
                        json={
                            "model": "tiny",
                            "query": {"text": QUERY},
                            "passages": [{"text": p} for p in g],
                        },
                    )
                    for g in groups
                ]
            )

    together = [r.json()["rankings"] for r in asyncio.run(all_at_once())]
    assert batcher.batches - before < len(groups)  # at least two requests shared a forward pass
    for a, b in zip(alone, together):
        assert [r["index"] for r in a] == [r["index"] for r in b]
        assert [r["logit"] for r in a] == pytest.approx([r["logit"] for r in b], abs=1e-4)


VALID = {"model": "tiny", "query": {"text": "q"}, "passages": [{"text": "p"}], "truncate": "END"}


def _with(**changes) -> bytes:
    body = {**VALID, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


MALFORMED = {
    "truncated JSON": (b'{"model": "tiny", "query": {"text": ', 422),
    "not JSON": (b"model=tiny&query=q", 422),
    "empty body": (b"", 422),
    "JSON null": (b"null", 422),
    "JSON array": (b"[]", 422),
    "JSON string": (b'"rank these"', 422),
    "missing model": (_with(model=...), 422),
    "missing query": (_with(query=...), 422),
    "missing passages": (_with(passages=...), 422),
    "empty passages": (_with(passages=[]), 422),
    "passages is a string": (_with(passages="p"), 422),
    "passage is a bare string": (_with(passages=["p"]), 422),
    "query is a bare string": (_with(query="q"), 422),
    "query text is a number": (_with(query={"text": 7}), 422),
    "passage text is null": (_with(passages=[{"text": None}]), 422),
    "extra nesting": (_with(query={"text": {"text": "q"}}), 422),
    "model is a list": (_with(model=["tiny"]), 422),
    "unknown truncate": (_with(truncate="START"), 422),
    "lower-case truncate": (_with(truncate="end"), 422),
    "misspelt key": (_with(passage=[{"text": "p"}]), 422),
    "unknown model": (_with(model="nvidia/other"), 404),
    "non-UTF-8 bytes": (
        b'{"model": "tiny", "query": {"text": "\xff\xfe"}, "passages": [{"text": "p"}]}',
        400,
    ),
    "lone surrogate": (
        b'{"model": "tiny", "query": {"text": "\\ud800"}, "passages": [{"text": "p"}]}',
        422,
    ),
    "too many passages": (_with(passages=[{"text": "p"}] * 51), 413),
    "huge body": (_with(passages=[{"text": "p" * 70_000}]), 413),
    "over the token budget": (
        _with(passages=[{"text": "vacuum storage " * 60}] * 40),
        413,
    ),  # 40 x 64 tokens
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_json_4xx_and_the_server_keeps_serving(server, case):
    body, status = MALFORMED[case]
    headers = {"content-type": "application/json"}
    response = httpx.post(f"{server.url}/v1/ranking", content=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()
    assert rank(server.url, ["still serving"]).status_code == 200


def test_a_chunked_body_over_the_limit_is_cut_off(server):
    def chunks():
        yield b'{"model": "tiny", "query": {"text": "q"}, "passages": [{"text": "'
        for _ in range(100):
            yield b"p" * 1024
        yield b'"}]}'

    response = httpx.post(
        f"{server.url}/v1/ranking",
        content=chunks(),
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "detail" in response.json()


def test_wrong_method_and_content_type(server):
    assert httpx.get(f"{server.url}/v1/ranking").status_code == 405
    response = httpx.post(
        f"{server.url}/v1/ranking", content=_with(), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422 and "detail" in response.json()


def test_not_ready_until_the_model_loads(settings):
    release = threading.Event()

    def slow_loader():
        release.wait(30)
        return settings.load()

    with ServerThread(create_app(settings, loader=slow_loader)) as srv:
        ready = httpx.get(f"{srv.url}/v1/health/ready")
        assert ready.status_code == 503 and ready.json()["detail"] == "model is loading"
        assert httpx.get(f"{srv.url}/v1/health/live").status_code == 200
        assert rank(srv.url, ["p"]).status_code == 503
        release.set()
        wait_ready(srv.url, 30)
        assert rank(srv.url, ["p"]).status_code == 200


def test_a_model_that_fails_to_load_is_reported(settings, tmp_path):
    failed = threading.Event()
    broken = settings.model_copy(update={"model_dir": str(tmp_path)})
    with ServerThread(create_app(broken, on_load_failure=failed.set)) as srv:
        assert failed.wait(10)
        ready = httpx.get(f"{srv.url}/v1/health/ready")
        assert ready.status_code == 503 and "failed to load" in ready.json()["detail"]


def test_no_server_error_found_by_schemathesis(server, tmp_path):
    """Property-based requests generated from the server's own OpenAPI schema; bounded to ~25 per
    operation."""
    st = [sys.executable, "-m", "schemathesis.cli"]
    result = subprocess.run(
        [
            *st,
            "run",
            f"{server.url}/openapi.json",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,  # its cache stays out of the repo
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_torch_engine_ranks_like_the_onnx_export(server, tiny_bert_dir):
    short = [p for p in PASSAGES if len(p) < 100]
    torch_settings = ServeSettings(
        model_dir=str(tiny_bert_dir), engine="torch", model_name="tiny", device="cpu"
    )
    with ServerThread(create_app(torch_settings)) as srv:
        wait_ready(srv.url)
        via_torch = rank(srv.url, short, truncate="NONE").json()["rankings"]
    via_onnx = rank(server.url, short, truncate="NONE").json()["rankings"]
    assert [r["index"] for r in via_torch] == [r["index"] for r in via_onnx]
    assert [r["logit"] for r in via_torch] == pytest.approx(
        [r["logit"] for r in via_onnx], abs=1e-4
    )


def test_batcher_fails_only_the_batch_that_broke(settings):
    from reranktune.serve.batching import DynamicBatcher

    engine = settings.load()
    good = engine.encode("q", ["a passage", "another"], truncate=True)

    async def scenario():
        batcher = DynamicBatcher(engine.score, max_batch=4, max_wait_s=0.0)
        await batcher.start()
        try:
            with pytest.raises(KeyError):
                await batcher.submit([{"attention_mask": [1]}])  # no input_ids: the engine raises
            return await batcher.submit(good)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == pytest.approx(engine.score(good))


def load_bench(name: str = "serve"):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_serve_bench_reports_every_configuration_against_sentence_transformers(onnx_dir, tmp_path):
    """bench/serve.py end to end at a tiny scale: report shape, the sentence-transformers torch
    baseline on the same model, the ONNX baselines skipped with a note without --st-python, and
    no server errors (timings not checked)."""
    bench = load_bench()
    loads = [(3, 1), (6, 2)]
    report = bench.run(
        str(onnx_dir), duration=0.5, loads=loads, pool_requests=4, out=tmp_path / "serve.json"
    )
    assert json.loads((tmp_path / "serve.json").read_text()) == report
    configurations = report["configurations"]
    cells = {"3x1", "6x2"}
    assert report["loads"] == ["3x1", "6x2"]
    for name in ("reranktune_cold", "reranktune_warm", "st_torch"):
        assert set(configurations[name]["cells"]) == cells
        for r in configurations[name]["cells"].values():
            assert r["requests"] > 0 and r["server_errors"] == 0
            assert set(r["latency_ms"]) == {"p50", "p95", "p99"}
    assert configurations["reranktune_warm"]["regime"] == "warm"
    assert report["warm_up"]["reranktune"]["pairs"] == 4 * 6
    assert report["warm_up"]["reranktune"]["server_errors"] == 0
    assert report["hf_model"] and report["baseline"] == "st_torch"
    for name in ("st_onnx_O3", "st_onnx_int8"):
        assert "--st-python" in configurations[name]["skipped"]
    assert report["ratios_vs_baseline"]["st_torch"]["6x2"]["pairs_per_s"] == 1.0
    assert report["ratios_vs_baseline"]["reranktune_warm"]["3x1"]["pairs_per_s"] > 0
    assert report["prior_cost"] == {} and "no prior" in report["notes"][0]
    # st_torch is the only sentence-transformers backend here, so the fastest is it
    for regime in ("cold", "warm"):
        for cell in cells:
            assert (
                report["over_st_best"][regime][cell]
                == report["ratios_vs_baseline"][f"reranktune_{regime}"][cell]["pairs_per_s"]
            )
    assert bench.server_errors(report) == 0
    assert report["machine"]["cores"] >= 1


def test_the_st_runner_skips_the_onnx_backend_without_optimum(tiny_bert_dir, tmp_path):
    try:
        import optimum.onnxruntime  # noqa: F401

        pytest.skip("optimum is installed here")
    except ImportError:
        pass
    bench = load_bench()
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps({"queries": ["q"], "passages": ["a", "b"], "pools": {}}))
    entry = bench.st_cells(
        sys.executable, tiny_bert_dir, "onnx", "O3", requests, [(2, 1)], 0.1, MAX_LENGTH
    )
    assert "optimum" in entry["skipped"] and "cells" not in entry


def test_a_model_with_a_prior_is_served_with_it_and_the_bench_measures_its_cost(
    tiny_bert_with_prior_dir, tmp_path
):
    folder = export_folder(tiny_bert_with_prior_dir, tmp_path / "onnx", MAX_LENGTH)
    app = create_app(
        ServeSettings(model_dir=str(folder), model_name="tiny", max_batch=16, max_wait_ms=5)
    )
    passages = [p for p in PASSAGES if p][:5]
    expected = Reranker.from_pretrained(
        str(tiny_bert_with_prior_dir), device="cpu", max_length=MAX_LENGTH
    ).score([QUERY] * len(passages), passages)
    with ServerThread(app) as srv:
        wait_ready(srv.url)
        body = {
            "model": "tiny",
            "query": {"text": QUERY},
            "passages": [{"text": p} for p in passages],
            "truncate": "END",
        }
        rankings = httpx.post(f"{srv.url}/v1/ranking", json=body).json()["rankings"]
    assert {r["index"]: r["logit"] for r in rankings} == pytest.approx(
        dict(enumerate(expected)), abs=1e-3
    )

    report = load_bench().run(
        str(folder), duration=0.5, loads=[(4, 2)], pool_requests=4, out=None, st_configs=[]
    )
    configurations = report["configurations"]
    for name in (
        "reranktune_cold",
        "reranktune_warm",
        "reranktune_without_prior_cold",
        "reranktune_without_prior_warm",
        "reranktune_corpus",
    ):
        r = configurations[name]["cells"]["4x2"]
        assert r["requests"] > 0 and r["server_errors"] == 0
    assert report["baseline"] == "reranktune_without_prior_warm"
    assert set(report["prior_cost"]) == {"cold", "warm", "corpus"}
    assert all(v > 0 for regime in report["prior_cost"].values() for v in regime.values())


def test_a_corpus_given_ahead_is_embedded_before_ready_and_scores_alike(
    tiny_bert_with_prior_dir, tmp_path
):
    """deploy.corpus: its passages get their prior embeddings at load, so a request for them
    embeds only its query, and scores as without the corpus."""
    from reranktune.beir_data import read_passages
    from reranktune.io import write_jsonl

    folder = export_folder(tiny_bert_with_prior_dir, tmp_path / "onnx", MAX_LENGTH)
    passages = [p for p in PASSAGES if p][:5]
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"_id": f"d{i}", "text": p} for i, p in enumerate(passages)])
    settings = ServeSettings(model_dir=str(folder), corpus=str(corpus))
    plain = settings.load()
    pinned = settings.load(read_passages(corpus))
    seen: list[str] = []
    encoder = pinned.prior.embed.encoder
    pinned.prior.embed.encoder = lambda texts: seen.extend(texts) or encoder(texts)
    expected = plain.score(plain.encode(QUERY, passages, truncate=True))
    assert pinned.score(pinned.encode(QUERY, passages, truncate=True)) == pytest.approx(expected)
    prefix = pinned.prior.config.dense.query_prefix
    assert seen == [prefix + QUERY]  # the passages were embedded at load
    pinned.score(pinned.encode(QUERY, ["a passage not in the corpus"], truncate=True))
    assert seen[-1].endswith("a passage not in the corpus")  # others as they come


def test_the_served_prior_embeds_a_few_texts_a_pass_on_the_cpu_with_the_same_vectors(
    tiny_bert_with_prior_dir, tmp_path
):
    """Both encoders the prior serves with (PyTorch and ONNX) take CPU_BATCH texts a pass on the
    CPU, and the batch does not change a vector."""
    import shutil

    import numpy as np

    from reranktune.reranker.config import RerankerConfig
    from reranktune.reranker.prior import CPU_BATCH, PRIOR_ONNX, Prior, export_prior_onnx

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_with_prior_dir, folder)
    config = RerankerConfig.load(folder).prior
    torch_prior = Prior.load(folder, config, device="cpu")
    export_prior_onnx(torch_prior, folder / config.folder / PRIOR_ONNX, 17)
    dense = config.dense.model_copy(update={"onnx_file": PRIOR_ONNX})
    onnx_prior = Prior.load(folder, config.model_copy(update={"dense": dense}), onnx=True)
    texts = [p for p in PASSAGES if p] * 3  # lengths from 1 token to over the maximum
    for prior in (torch_prior, onnx_prior):
        encoder = prior.encoder
        assert encoder.batch_size == CPU_BATCH < len(texts)
        assert encoder.max_length == config.dense.max_length
        small = encoder(texts)
        encoder.batch_size = len(texts)
        np.testing.assert_allclose(small, encoder(texts), atol=1e-5)


def test_the_prior_cost_bench_times_every_part_on_the_served_engine(
    tiny_bert_with_prior_dir, tmp_path
):
    """bench/prior_cost.py at a tiny scale: each embedder setting timed on what serve loads, its
    ceiling below 1, and the encoder's own settings back after each."""
    from types import SimpleNamespace

    from reranktune.reranker.prior import CPU_BATCH

    folder = export_folder(tiny_bert_with_prior_dir, tmp_path / "onnx", MAX_LENGTH)
    bench = load_bench("prior_cost")
    report = bench.run(str(folder), passages_per_request=6, rounds=2, batches=(2, 64), out=None)
    assert report["served_prior_batch"] == CPU_BATCH
    rows = report["embedder"]
    assert set(rows) == {
        "embedder_batch_2",
        "embedder_batch_64",
        "embedder_at_cross_encoder_length",
    }
    assert rows["embedder_at_cross_encoder_length"]["max_length"] == MAX_LENGTH
    assert rows["embedder_batch_64"]["over_batch_64"] == 1.0
    assert all(0 < row["never_seen_ceiling"] < 1 for row in rows.values())

    encoder = SimpleNamespace(batch_size=8, max_length=256)
    with bench.encoder_settings(encoder, 2, 64):
        assert (encoder.batch_size, encoder.max_length) == (2, 64)
    assert (encoder.batch_size, encoder.max_length) == (8, 256)
