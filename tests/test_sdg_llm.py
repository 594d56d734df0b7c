"""The LLM generator end to end against a scripted OpenAI-compatible server on 127.0.0.1."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO
from fake_llm import FakeLLM

from reranktune.io import InputError
from reranktune.params import SdgParams, load_section
from reranktune.prep.records import load_sdg
from reranktune.sdg import prompts
from reranktune.sdg.checkpoint import checkpoint_path
from reranktune.sdg.llm import dedup_keep, split_sections
from reranktune.sdg.llm_client import RateLimiter
from reranktune.sdg.run import run_sdg
from reranktune.sdg.schemas import QAGeneration

KEY = "sk-fake-DISTINCTIVE-7f3a9c41e"
KEY_ENV = "RERANKTUNE_TEST_LLM_KEY"


def llm_settings(server, **overrides) -> dict:
    settings = dict(
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        dedup_embeddings="provider",
        requests_per_minute=None,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        concurrency=2,
        timeout_s=5.0,
    )
    return {**settings, **overrides}


def sdg_params(server, docs, **overrides) -> SdgParams:
    return SdgParams(input_path=str(docs), generator="llm", llm=llm_settings(server, **overrides))


def run(server, docs, out_dir: Path, **overrides) -> dict:
    return run_sdg(
        sdg_params(server, docs, **overrides), out_dir / "qa.jsonl", out_dir / "sdg.json"
    )


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "qa.jsonl").read_text().splitlines()]


def assert_key_absent(root: Path, *texts: str) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"key leaked into {path}"
    for text in texts:
        assert KEY not in text


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server():
    with FakeLLM(expected_key=KEY) as fake:
        yield fake


# -- building blocks ---------------------------------------------------------------
def test_reply_parser_reads_fenced_json_after_thinking_and_names_schema_errors():
    reply = (
        '<think>{"not": "this"}</think>Sure.\n```json\n'
        '{"pairs": [{"question": "what is wal", "answer": "a log",'
        ' "query_type": "contextual", "reasoning_type": "factual", "question_complexity": 2,'
        ' "segment_ids": ["2"], "hop_count": 1}]}\n```'
    )
    parsed = prompts.parse_reply(reply, QAGeneration)
    assert parsed.pairs[0].segment_ids == [2]
    with pytest.raises(prompts.MalformedReply, match="query_type"):
        prompts.parse_reply(
            '```json\n{"pairs": [{"question": "why?", "answer": "a", "query_type": "other",'
            ' "reasoning_type": "factual", "question_complexity": 1, "segment_ids": [1],'
            ' "hop_count": 1}]}\n```',
            QAGeneration,
        )
    with pytest.raises(prompts.MalformedReply, match="invalid JSON"):
        prompts.parse_reply('```json\n{"pairs": [\n```', QAGeneration)


def test_dedup_drops_later_near_duplicates_only():
    vectors = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0.7, 0.7, 0]], dtype=np.float32)
    assert dedup_keep(vectors, 0.9) == [0, 2, 3]


def test_sections_fit_their_budget():
    chunks = [("d", "x" * n) for n in (300, 300, 300, 900, 30)]
    sections = split_sections(chunks, budget=250, chars_per_token=3.0)
    assert [cid for s in sections for cid in s] == [1, 2, 3, 4, 5]
    assert sections == [[1, 2], [3], [4], [5]]


def test_rate_limiter_spaces_request_starts():
    limiter = RateLimiter(requests_per_minute=600)  # one start per 0.1 s
    start = time.monotonic()
    for _ in range(4):
        limiter.wait()
    assert time.monotonic() - start >= 0.29


def test_a_key_pasted_into_params_is_refused_and_not_echoed(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(f"sdg:\n  llm:\n    api_key_env: {KEY}\n")
    with pytest.raises(
        InputError, match=r"sdg\.llm\.api_key_env: .*NAME of an environment variable"
    ) as info:
        load_section("sdg", path)
    assert KEY not in str(info.value)


# -- end to end in process ----------------------------------------------------------------
def test_four_steps_write_the_reference_record_shape(
    server, key_env, small_corpus, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    summary = run(server, small_corpus, tmp_path, step_models={"judge": "judge-model"})
    out = records(tmp_path)
    assert len(out) == summary["units_done"] == 12
    for record in out:
        ids = {c["chunk_id"] for c in record["chunks"]}
        pairs = record["deduplicated_qa_pairs"]
        evaluations = record["qa_evaluations"]["evaluations"]
        assert isinstance(record["file_name"], list) and len(pairs) == len(evaluations) > 0
        for pair, judged in zip(pairs, evaluations):
            assert set(pair["segment_ids"]) <= ids
            assert pair["hop_count"] == len(pair["segment_ids"])
            assert {"relevance", "accuracy", "context_support", "clarity", "overall"} <= set(judged)
            assert 1 <= judged["overall"]["score"] <= 10
        questions = [p["question"] for p in pairs]
        assert not any(q.endswith(" exactly") for q in questions), "near-duplicate survived dedup"
    kinds = {p["query_type"] for r in out for p in r["deduplicated_qa_pairs"]}
    assert kinds == {"multi_hop", "structural", "contextual"}
    # the QA prompt asks for the configured mix; the judge runs on its own model
    qa_prompt = server.steps("qa")[0]["user"]
    assert (
        "7 question/answer pairs about the text below: 3 multi_hop, 2 structural, 2 contextual"
        in qa_prompt
    )
    assert {c["model"] for c in server.steps("judge")} == {"judge-model"}
    assert {c["model"] for c in server.steps("qa")} == {"nvidia/nemotron-3-nano-30b-a3b"}
    assert [c["model"] for c in server.steps("preflight")] == [
        "judge-model",
        "nvidia/nemotron-3-nano-30b-a3b",
    ]
    assert len(server.steps("qa")) == 12
    written = json.loads((tmp_path / "sdg.json").read_text())
    assert written["qa_pairs"] == sum(len(r["deduplicated_qa_pairs"]) for r in out)
    assert written["pairs_duplicate"] >= 12 and written["step_failures"] == {
        "artifacts": 0,
        "qa": 0,
        "dedup": 0,
        "judge": 0,
    }
    assert written["calls_this_run"]["requests"] == len(server.calls)
    assert_key_absent(tmp_path, caplog.text)


def test_429_500_and_timeout_are_retried_and_change_nothing(
    server, key_env, small_corpus, tmp_path
):
    run(server, small_corpus, tmp_path / "clean")
    server.script += [
        ("qa", "429"),
        ("judge", "500"),
        ("artifacts", "timeout"),
        ("embeddings", "500"),
    ]
    server.timeout_sleep = 1.0
    summary = run(server, small_corpus, tmp_path / "faulty", timeout_s=0.4)
    assert (tmp_path / "faulty" / "qa.jsonl").read_text() == (
        tmp_path / "clean" / "qa.jsonl"
    ).read_text()
    calls = summary["calls_this_run"]
    assert (calls["http_429"], calls["http_500"], calls["timeouts"], calls["retries"]) == (
        1,
        2,
        1,
        4,
    )
    assert server.script == []


def test_broken_json_drops_only_that_step_and_is_counted(server, key_env, small_corpus, tmp_path):
    server.script += [("qa", "broken_json")] * 3 + [("judge", "bad_schema")]
    summary = run(server, small_corpus, tmp_path, concurrency=1, parse_retries=2)
    out = records(tmp_path)
    assert len(out) == 12
    assert [len(r["deduplicated_qa_pairs"]) == 0 for r in out].count(True) == 1
    assert summary["step_failures"]["qa"] == 1 and summary["units_with_dropped_steps"] == 1
    assert (
        summary["calls_this_run"]["malformed_replies"] == 4
    )  # 3 for the dropped step, 1 recovered


def test_retries_exhausted_fail_the_stage_and_a_rerun_pays_only_for_the_rest(
    server, key_env, small_corpus, tmp_path
):
    server.script += [("qa", "500")] * 2
    with pytest.raises(
        InputError, match=r"1 of 12 documents failed after 1 retries.*Run the stage again"
    ):
        run(server, small_corpus, tmp_path, concurrency=1, max_retries=1)
    assert not (tmp_path / "qa.jsonl").exists()
    assert json.loads((tmp_path / "sdg.json").read_text())["units_failed"] == 1
    failed_doc = server.steps("qa")[0]["docs"]
    before = len(server.calls)
    summary = run(server, small_corpus, tmp_path, concurrency=1, max_retries=1)
    again = [c for c in server.calls[before:] if c["step"] == "qa"]
    assert [c["docs"] for c in again] == [failed_doc]
    assert summary["units_restored"] == 11 and len(records(tmp_path)) == 12


def test_missing_key_stops_before_any_call(server, monkeypatch, small_corpus, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(InputError, match=rf"{KEY_ENV} is not set.*0 of 12 documents done"):
        run(server, small_corpus, tmp_path)
    assert server.calls == []


def test_rejected_key_stops_at_the_preflight_without_leaking_it(
    small_corpus, tmp_path, key_env, caplog
):
    caplog.set_level(logging.DEBUG)
    with FakeLLM(expected_key="the-right-key") as server:
        with pytest.raises(
            InputError, match=r"HTTP 401.*stopped before any work; 0 of 12 documents done"
        ) as info:
            run(server, small_corpus, tmp_path)
        assert [c["step"] for c in server.calls] == ["preflight"]
    assert "***" in str(info.value)  # the server echoed the header; the client redacted it
    assert_key_absent(tmp_path, str(info.value), caplog.text)


def test_a_key_revoked_mid_run_stops_with_the_count_done(server, key_env, small_corpus, tmp_path):
    original = server._fault

    def revoke_after_two_documents(step):
        if len(server.steps("judge")) >= 2:
            server.expected_key = "revoked"
        return original(step)

    server._fault = revoke_after_two_documents
    with pytest.raises(
        InputError, match=r"HTTP 401.*stopped\. \d+ of 12 documents done and kept in"
    ):
        run(server, small_corpus, tmp_path, concurrency=1)
    kept = checkpoint_path(tmp_path / "qa.jsonl").read_text().splitlines()
    assert 1 <= len(kept) <= 3


def test_only_the_configured_loopback_endpoint_is_contacted(
    server, key_env, small_corpus, tmp_path, monkeypatch
):
    contacted = []
    real_connect, real_create = socket.socket.connect, socket.create_connection

    def connect(sock, address):
        contacted.append(address)
        return real_connect(sock, address)

    def create_connection(address, *args, **kwargs):
        contacted.append(address)
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HTTPS_PROXY", "http://192.0.2.1:3128")  # ignored: trust_env is off
    run(server, small_corpus, tmp_path, dedup_embeddings="local")  # local MiniLM for dedup
    assert contacted, "the patch saw no connection at all"
    assert {(str(host), int(port)) for host, port, *_ in contacted} == {("127.0.0.1", server.port)}
    assert not server.steps("embeddings")


def test_long_documents_are_split_so_no_prompt_exceeds_the_budget(server, key_env, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    text = "\n\n".join(
        (REPO / "tests" / "fixtures" / "sample_corpus" / "python" / name).read_text()
        for name in sorted(os.listdir(REPO / "tests" / "fixtures" / "sample_corpus" / "python"))[:3]
    )
    (docs / "long.txt").write_text(text)
    summary = run(server, docs, tmp_path / "out", max_prompt_tokens=1500, chars_per_token=3.0)
    assert summary["sections"] > 3
    for call in server.calls:
        if call["step"] in ("artifacts", "qa", "judge"):
            assert prompts.messages_tokens(call["messages"], 3.0) <= 1500
    record = records(tmp_path / "out")[0]
    cited = {s for p in record["deduplicated_qa_pairs"] for s in p["segment_ids"]}
    assert max(cited) > len(record["chunks"]) // 2  # later sections cite their own chunk ids


def test_multi_document_bundles_share_chunk_ids_and_feed_prep(
    server, key_env, small_corpus, tmp_path
):
    summary = run(
        server, small_corpus, tmp_path, multi_doc=True, bundle_size=3, max_prompt_tokens=60000
    )
    out = records(tmp_path)
    assert summary["units"] == len(out) == 4
    assert all(len(r["file_name"]) == 3 for r in out)
    assert {len(c["docs"]) for c in server.steps("qa")} == {3}
    for record in out:
        assert [c["chunk_id"] for c in record["chunks"]] == list(
            range(1, len(record["chunks"]) + 1)
        )
    data = load_sdg(tmp_path / "qa.jsonl", quality_threshold=7.0, max_pos_docs=5)
    assert data.counts["documents"] == 4 and data.counts["pairs_kept"] > 0


def test_prep_reads_the_reference_published_record_shape(tmp_path):
    crit = {"score": 9, "justification": "Supported by segment 2."}
    record = {
        "file_name": ["nv_docs/cuda_guide.md"],
        "text": "…",
        "chunks": [
            {"chunk_id": 1, "text": "CUDA kernels run on the GPU."},
            {"chunk_id": 2, "text": "Streams order asynchronous work on a device."},
        ],
        "deduplicated_qa_pairs": [
            {
                "question": "How do CUDA streams order work?",
                "answer": "Asynchronously, per stream.",
                "question_complexity": 3,
                "query_type": "multi_hop",
                "reasoning_type": "procedural",
                "segment_ids": ["1", "2"],
                "hop_count": 2,
                "hop_contexts": [
                    {"hop_number": 1, "segment_ids": ["1"], "summary": "kernels"},
                    {"hop_number": 2, "segment_ids": ["2"], "summary": "streams"},
                ],
            },
            {
                "question": "What is a kernel?",
                "answer": "GPU code.",
                "question_complexity": 1,
                "query_type": "contextual",
                "reasoning_type": "factual",
                "segment_ids": ["1"],
                "hop_count": 1,
                "hop_contexts": [],
            },
        ],
        "qa_evaluations": {
            "evaluations": [
                {
                    "relevance": crit,
                    "accuracy": crit,
                    "context_support": crit,
                    "clarity": crit,
                    "overall": {"score": 8.5, "assessment": "Good multi-hop question."},
                },
                {
                    "relevance": crit,
                    "accuracy": crit,
                    "context_support": crit,
                    "clarity": crit,
                    "overall": {"score": 6.0, "assessment": "Too simple."},
                },
            ]
        },
    }
    path = tmp_path / "reference.jsonl"
    path.write_text(json.dumps(record) + "\n")
    data = load_sdg(path, quality_threshold=7.0, max_pos_docs=5)
    assert data.counts["pairs_kept"] == 1 and data.counts["dropped_low_quality"] == 1
    (query,) = data.queries
    assert query.source_id == "nv_docs/cuda_guide.md" and len(query.positives) == 2
    assert query.metadata == {
        "query_type": "multi_hop",
        "reasoning_type": "procedural",
        "hop_count": 2,
        "quality_score": 8.5,
    }


# -- as a process: kill and resume; under DVC -------------------------------------------------
def _stage_env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        KEY_ENV: KEY,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def _write_params(root: Path, docs: Path, server, **overrides) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sdg"].update(
        input_path=str(docs), generator="llm", llm=llm_settings(server, **overrides)
    )
    params["prep"]["quality_threshold"] = 7.0
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_killed_run_resumes_without_paying_twice_and_equals_an_uninterrupted_run(
    server, small_corpus, tmp_path
):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for root in (clean, killed):
        root.mkdir()
        _write_params(root, small_corpus, server, concurrency=1)
    stage = [sys.executable, str(REPO / "stages" / "sdg.py")]
    subprocess.run(stage, cwd=clean, env=_stage_env(), check=True, capture_output=True, timeout=120)

    server.calls.clear()
    server.delay = 0.05
    ckpt = checkpoint_path(killed / "data" / "sdg" / "qa.jsonl")
    proc = subprocess.Popen(
        stage, cwd=killed, env=_stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not ckpt.exists() or len(ckpt.read_text().splitlines()) < 3
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {
        tuple(json.loads(line)["files"]) for line in ckpt.read_text().splitlines() if line.strip()
    }
    assert 3 <= len(finished) < 12, "the kill did not land in the middle of the run"
    assert not (killed / "data" / "sdg" / "qa.jsonl").exists()

    server.delay = 0.0
    before = len(server.calls)
    result = subprocess.run(
        stage, cwd=killed, env=_stage_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    resumed_qa = [tuple(c["docs"]) for c in server.calls[before:] if c["step"] == "qa"]
    assert not set(resumed_qa) & finished  # finished documents are not paid for twice
    assert len(resumed_qa) == 12 - len(finished)
    assert (killed / "data" / "sdg" / "qa.jsonl").read_bytes() == (
        clean / "data" / "sdg" / "qa.jsonl"
    ).read_bytes()
    summary = json.loads((killed / "metrics" / "sdg_details.json").read_text())
    assert summary["units_restored"] == len(finished)
    assert_key_absent(killed, result.stdout, result.stderr)


@pytest.mark.slow
def test_dvc_repro_with_the_llm_generator_feeds_prep(server, small_corpus, tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "stages", "src"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copytree(small_corpus, root / "docs")
    _write_params(root, Path("docs"), server)
    env = {
        **_stage_env(),
        "PYTHONPATH": str(root / "src"),
        "RERANKTUNE_CACHE_DIR": str(root / ".cache"),
    }
    logs = []
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["dvc", "repro", "prep"],
    ):
        result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        logs += [result.stdout, result.stderr]
    train = json.loads((root / "data" / "prep" / "train.json").read_text())
    assert train["data"] and (root / "data" / "prep" / "eval_beir" / "qrels" / "test.tsv").exists()
    lock = (root / "dvc.lock").read_text()
    assert "generator: llm" in lock and KEY_ENV in lock
    assert json.loads((root / "metrics" / "sdg_details.json").read_text())["generator"] == "llm"
    assert_key_absent(root, *logs)
