import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import SAMPLE_CORPUS
from onnx import numpy_helper

from reranktune.beir_data import BeirData
from reranktune.export.gate import RankingSet, judge
from reranktune.export.onnx_export import export_onnx
from reranktune.export.parity import ParityProbe
from reranktune.export.run import run_export
from reranktune.export.tensorrt_engine import TensorRTSession, build_engine, tensorrt_missing
from reranktune.export.variants import (
    VARIANTS,
    build_variants,
    head_node_names,
    quantize_int8,
)
from reranktune.io import InputError, write_jsonl
from reranktune.params import EmbeddingParams, ExportParams, load_section
from reranktune.reranker.config import RerankerConfig
from reranktune.reranker.model import Reranker
from reranktune.reranker.onnx import onnx_session
from reranktune.reranker.scoring import SessionBackend, TorchBackend, format_pair
from reranktune.retrieval.first_stage import FirstStageSettings

SHORT = "question:what is vacuum \n \n passage:VACUUM reclaims storage occupied by dead tuples."
LONG = "question:lambda \n \n passage:" + "Lambda expressions create anonymous functions. " * 150
TINY = "question:short \n \n passage:x"
TEXTS = ([SHORT] * 3 + [LONG, TINY]) * 14
# batch 1 short, batch 1 at max length, batch 64 short, batch 64 at max length
SHAPE_TEXTS = [SHORT, LONG] + [SHORT, TINY] * 32 + [SHORT, LONG, TINY, SHORT] * 16


FIRST_STAGE = FirstStageSettings("dense", EmbeddingParams(max_length=64))


def _export_all(fixture_dir, folder, max_length=512):
    reranker = Reranker.from_pretrained(str(fixture_dir), device="cpu", max_length=max_length)
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, folder / "model.onnx", 17, sample)
    built = build_variants(folder, ["fp32", "optimized", "int8", "fp16"], reranker.model.config)
    return reranker, names, built


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_every_variant_matches_torch_at_several_shapes(fixture, request, tmp_path):
    reranker, names, built = _export_all(request.getfixturevalue(fixture), tmp_path)
    assert set(built) == {"fp32", "optimized", "int8", "fp16"}
    probe = ParityProbe(
        reranker.model, reranker.tokenizer, SHAPE_TEXTS, 512, names, batch_sizes=(1, 1, 64, 64)
    )
    shapes = [list(b["input_ids"].shape) for b in probe.batches]
    assert shapes[0][0] == 1 and shapes[0][1] < 32 and shapes[1] == [1, 512]
    assert shapes[2][0] == 64 and shapes[2][1] < 32 and shapes[3] == [64, 512]
    if fixture == "tiny_bert_dir":  # eager export: the optimiser fuses attention
        assert built["optimized"]["fused_ops"].get("Attention", 0) == 2, built["optimized"]
    for name, atol in [("fp32", 1e-4), ("optimized", 1e-4), ("fp16", 2e-2)]:
        parity = probe.compare(SessionBackend(onnx_session(str(tmp_path / VARIANTS[name].file))))
        assert parity.max_abs_diff < atol, (name, parity)
    int8 = onnx_session(str(tmp_path / VARIANTS["int8"].file))
    assert int8.run(["logits"], probe.batches[3])[0].shape == (64, 1)
    fp16 = onnx_session(
        str(tmp_path / VARIANTS["fp16"].file)
    )  # mixed precision inside, fp32/int64 at the edges
    assert {i.name: i.type for i in fp16.get_inputs()} == {n: "tensor(int64)" for n in names}
    assert fp16.get_outputs()[0].type == "tensor(float)"
    assert (
        onnx.load(str(tmp_path / VARIANTS["fp16"].file)).graph.initializer[0].data_type
        == onnx.TensorProto.FLOAT16
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_int8_keeps_the_head_in_fp32_and_quantises_per_channel(fixture, request, tmp_path):
    _export_all(request.getfixturevalue(fixture), tmp_path)
    graph = onnx.load(str(tmp_path / VARIANTS["int8"].file)).graph
    optimized = onnx.load(str(tmp_path / VARIANTS["optimized"].file))
    head = {n for n in head_node_names(optimized) if "classifier" in n or "score" in n}
    assert head
    quantised = [
        n.name for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")
    ]
    assert quantised and not [n for n in quantised if any(n.startswith(h) for h in head)]
    scales = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("_scale")]
    assert any(s.size > 1 for s in scales)  # one scale per output channel


@pytest.mark.parametrize("saturates", [True, False])
def test_int8_weights_keep_seven_bits_where_the_cpu_lacks_vnni(
    saturates, tiny_bert_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("reranktune.export.variants.int8_saturates", lambda: saturates)
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu")
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    export_onnx(reranker.model, reranker.tokenizer, tmp_path / "model.onnx", 17, sample)
    quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    weights = [
        numpy_helper.to_array(t)
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_quantized")
    ]
    largest = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    assert largest <= 64 if saturates else largest > 64


def test_export_leaves_the_model_in_eval_mode(tiny_bert_dir, tmp_path):
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu")
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    attn = reranker.model.config._attn_implementation
    export_onnx(reranker.model, reranker.tokenizer, tmp_path / "model.onnx", 17, sample)
    assert not reranker.model.training
    assert reranker.model.config._attn_implementation == attn


def test_parity_flags_a_corrupted_graph(tiny_bert_dir, tmp_path):
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu")
    sample = reranker.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    names = export_onnx(reranker.model, reranker.tokenizer, tmp_path / "model.onnx", 17, sample)
    session = onnx_session(str(tmp_path / "model.onnx"))
    with torch.no_grad():
        reranker.model.classifier.bias += 0.5  # the torch side now differs from the graph
    # the probe run_export builds once and compares every variant with
    parity = ParityProbe(reranker.model, reranker.tokenizer, TEXTS, 128, names).compare(
        SessionBackend(session)
    )
    assert parity.max_abs_diff == pytest.approx(0.5, abs=1e-3)
    assert np.isfinite(parity.spearman)


def _perturb(path, scale, seed=0):
    """Add noise to every float weight matrix of an ONNX file, in place."""
    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.ndim == 2:
            noisy = array + rng.normal(0, scale * (array.std() + 1e-6), array.shape).astype(
                np.float32
            )
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(path))


def test_gate_rejects_a_perturbed_variant_and_accepts_the_faithful_one(tiny_bert_dir, tmp_path):
    reranker, names, _ = _export_all(tiny_bert_dir, tmp_path, max_length=128)
    _perturb(tmp_path / VARIANTS["optimized"].file, scale=2.0)
    passages = [
        f"passage {i}: " + " ".join(SHORT.split()[i % 7 :]) + f" item {i}" for i in range(40)
    ]
    corpus = {f"d{i}": {"title": "", "text": p} for i, p in enumerate(passages)}
    queries = {f"q{j}": f"query number {j} about vacuum" for j in range(8)}
    candidates = {q: {f"d{i}": 0.0 for i in range(j * 5, j * 5 + 5)} for j, q in enumerate(queries)}
    # relevance = PyTorch's own top choice, so PyTorch scores NDCG@10 = 1 and any reordering loses
    torch_best = {}
    for q, docs in candidates.items():
        ids = list(docs)
        scores = reranker.score([queries[q]] * len(ids), [corpus[d]["text"] for d in ids])
        torch_best[q] = {ids[int(np.argmax(scores))]: 1}
    ranking = RankingSet(BeirData(corpus, queries, torch_best, {}), candidates, "dense")
    params = ExportParams(max_ndcg_drop=0.01)
    probe = ParityProbe(reranker.model, reranker.tokenizer, TEXTS, 128, names)
    torch_ndcg, _ = ranking.ndcg(reranker, 64)
    assert torch_ndcg == pytest.approx(1.0)
    verdicts = {}
    for name in ("fp32", "optimized"):
        session = onnx_session(str(tmp_path / VARIANTS[name].file))
        ndcg, _ = ranking.ndcg(reranker.with_backend(SessionBackend(session)), 64)
        verdicts[name] = judge(
            True, probe.compare(SessionBackend(session)), ndcg, torch_ndcg, params
        )
    assert verdicts["fp32"]["accepted"] and verdicts["fp32"]["ndcg_drop"] == 0
    assert not verdicts["optimized"]["accepted"]
    assert verdicts["optimized"]["ndcg_drop"] > 0.01
    assert "NDCG@10 drop" in verdicts["optimized"]["rejected_because"]
    assert "parity_atol" in verdicts["optimized"]["rejected_because"]


@pytest.fixture
def small_beir(tmp_path):
    """A BEIR folder from twelve sample documents; each query's answer is its own document."""
    folder = tmp_path / "beir"
    docs = sorted((SAMPLE_CORPUS / "postgresql").glob("*.txt"))[:12]
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for i, path in enumerate(docs):
        words = path.read_text(encoding="utf-8").split()
        corpus.append({"_id": f"d{i}", "title": "", "text": " ".join(words[:80])})
        queries.append({"_id": f"q{i}", "text": " ".join(words[2:9])})
        qrels.append(f"q{i}\td{i}\t1")
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_run_export_writes_a_self_describing_folder(
    fixture, request, small_beir, tmp_path, monkeypatch
):
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out, report_path = tmp_path / "onnx", tmp_path / "export.json"
    params = ExportParams(gate_queries=0, gate_top_k=5, parity_pairs=16)
    report = run_export(
        params, FIRST_STAGE, request.getfixturevalue(fixture), small_beir, out, report_path
    )
    assert json.loads(report_path.read_text()) == report
    assert report["gate"] == {
        "queries": 12,
        "pairs": 60,
        "top_k": 5,
        "first_stage": "dense",
        "max_ndcg_drop": 0.005,
    }
    for name in ("fp32", "optimized"):
        assert report[name]["accepted"] and report[name]["ndcg_drop"] == 0, report[name]
    assert (
        report["fp16"]["NDCG@10"] is None
    )  # CPU-only here: built, loaded and probed, not reranked
    config = RerankerConfig.load(out)
    onnx = config.onnx
    # the default is the accepted CPU variant export timed fastest (logit + prior, serve's way)
    cpu_variants = ("fp32", "optimized", "int8", "bf16")  # bf16 where this CPU has bf16 units
    timed = {n: report[n]["pairs_per_s"] for n in cpu_variants if n in report}
    assert all((speed is not None) == report[n]["accepted"] for n, speed in timed.items())
    assert report["fp16"]["pairs_per_s"] is None  # a GPU variant: not timed on the CPU
    accepted = {n: speed for n, speed in timed.items() if report[n]["accepted"]}
    assert onnx.default_variant == max(accepted, key=accepted.get) == report["speed"]["fastest"]
    assert onnx.file == VARIANTS[onnx.default_variant].file
    assert report["speed"]["pairs"] == 60 and report["speed"]["rounds"] >= 1
    for name, entry in onnx.variants.items():
        assert entry.accepted == report[name]["accepted"]
        assert (entry.file is not None) == entry.accepted == (out / VARIANTS[name].file).exists()
    assert "tensorrt" not in report or tensorrt_missing() is None
    # serve's view: only the folder, nothing from the training side
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    session = ort.InferenceSession(
        str(out / onnx.variants["fp32"].file), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == onnx.inputs
    text = format_pair(config.prompt_template, "what does vacuum do", "VACUUM reclaims storage.")
    batch = tokenizer([text], truncation=True, max_length=config.max_length, return_tensors="np")
    logit = session.run([onnx.output], {n: batch[n] for n in onnx.inputs})[0][0, 0]
    reference = Reranker.from_pretrained(str(request.getfixturevalue(fixture)), device="cpu")
    assert logit == pytest.approx(
        reference.score(["what does vacuum do"], ["VACUUM reclaims storage."])[0], abs=1e-4
    )


def test_run_export_drops_a_rejected_int8_and_serves_the_next_best(
    tiny_bert_dir, small_beir, tmp_path, monkeypatch
):
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "onnx"
    # INT8 can never reach a rank correlation of exactly 1 against fp32 scores: it must be rejected
    params = ExportParams(
        variants=["fp32", "optimized", "int8"],
        gate_queries=6,
        gate_top_k=4,
        parity_pairs=16,
        lossy_min_spearman=1.0,
    )
    report = run_export(params, FIRST_STAGE, tiny_bert_dir, small_beir, out, tmp_path / "e.json")
    assert (
        not report["int8"]["accepted"]
        and "lossy_min_spearman" in report["int8"]["rejected_because"]
    )
    onnx = RerankerConfig.load(out).onnx
    assert onnx.variants["int8"].file is None and not onnx.variants["int8"].accepted
    assert not (out / VARIANTS["int8"].file).exists()
    assert onnx.default_variant in ("fp32", "optimized")
    assert onnx.default_variant == max(
        ("fp32", "optimized"), key=lambda n: report[n]["pairs_per_s"]
    )
    assert onnx.file == VARIANTS[onnx.default_variant].file


def test_the_measured_default_is_what_serve_loads(tiny_bert_dir, small_beir, tmp_path, monkeypatch):
    import reranktune.reranker.model as model_module
    from reranktune.serve.engines import load_engine

    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "onnx"
    # whichever variant times fastest must be the one loaded: make int8 win by a wide margin
    speeds = {"fp32": 10.0, "optimized": 20.0, "int8": 30.0}
    monkeypatch.setattr(
        "reranktune.export.gate.RankingSet.served_speed",
        lambda self, reranker, batch_size, pairs: speeds[_variant_of(reranker)],
    )
    params = ExportParams(
        variants=["fp32", "optimized", "int8"],
        gate_queries=6,
        gate_top_k=4,
        parity_pairs=16,
        lossy_min_spearman=-1.0,
        max_ndcg_drop=1.0,
    )
    report = run_export(params, FIRST_STAGE, tiny_bert_dir, small_beir, out, tmp_path / "e.json")
    assert {n: report[n]["pairs_per_s"] for n in speeds} == speeds
    onnx = RerankerConfig.load(out).onnx
    assert onnx.default_variant == "int8" and onnx.variants["int8"].accepted
    assert onnx.file == "model.int8.onnx"
    loaded = []
    real = model_module.onnx_session
    monkeypatch.setattr(
        model_module,
        "onnx_session",
        lambda path, *a, **k: loaded.append(Path(path).name) or real(path, *a, **k),
    )
    Reranker.from_pretrained(str(out), backend="onnx")
    engine = load_engine("export", out)
    assert loaded == ["model.int8.onnx", "model.int8.onnx"] and engine.kind == "export"


def _variant_of(reranker) -> str:
    """The variant name of the graph a gate-built reranker's session runs."""
    path = Path(reranker.backend.session._model_path).name
    return next(n for n, v in VARIANTS.items() if v.file == path)


def test_export_params_need_fp32_and_ordered_profiles(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("export:\n  variants: [int8]\n")
    with pytest.raises(InputError, match="variants must include fp32"):
        load_section("export", path)
    path.write_text("export:\n  variants: [fp32, int4]\n")
    with pytest.raises(InputError, match=r"export\.variants\.1"):
        load_section("export", path)
    path.write_text("export:\n  trt_length: [512, 256, 3]\n")
    with pytest.raises(InputError, match="trt_length must be three increasing"):
        load_section("export", path)


@pytest.mark.skipif(
    tensorrt_missing() is not None, reason=f"TensorRT unusable here: {tensorrt_missing()}"
)
def test_tensorrt_engine_matches_torch(tiny_bert_dir, tmp_path):
    reranker, names, _ = _export_all(tiny_bert_dir, tmp_path)
    build_engine(
        tmp_path / "model.onnx", tmp_path / "model.plan", names, [1, 16, 64], [3, 256, 512]
    )
    probe = ParityProbe(
        reranker.model, reranker.tokenizer, SHAPE_TEXTS, 512, names, batch_sizes=(1, 1, 64, 64)
    )
    parity = probe.compare(SessionBackend(TensorRTSession(tmp_path / "model.plan")))
    assert parity.max_abs_diff < 2e-2 and parity.spearman > 0.99, parity


def test_a_reranker_with_a_prior_is_exported_and_served_with_it(
    tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    from reranktune.serve.engines import load_engine

    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "onnx"
    params = ExportParams(variants=["fp32"], gate_queries=0, gate_top_k=5, parity_pairs=16)
    report = run_export(
        params, FIRST_STAGE, tiny_bert_with_prior_dir, small_beir, out, tmp_path / "e.json"
    )
    assert report["fp32"]["accepted"] and report["fp32"]["ndcg_drop"] == 0
    assert report["prior"]["accepted"] and report["prior"]["max_abs_diff"] < 1e-4, report["prior"]
    assert (
        report["prior"]["onnx_file"] == "prior/model.onnx"
        and (out / "prior" / "model.onnx").exists()
    )
    prior = RerankerConfig.load(tiny_bert_with_prior_dir).prior
    exported = RerankerConfig.load(out).prior
    assert exported.dense.onnx_file == "model.onnx"
    assert (
        exported.model_copy(update={"dense": exported.dense.model_copy(update={"onnx_file": None})})
        == prior
    )
    assert (out / "prior" / "modules.json").exists() and (out / "prior" / "lexical.json").exists()

    query, passages = (
        "what does vacuum do",
        ["VACUUM reclaims storage.", "A cursor walks rows.", "Vacuum it."],
    )
    reference = Reranker.from_pretrained(str(tiny_bert_with_prior_dir), device="cpu")
    expected = reference.score([query] * 3, passages)
    logits_only = Reranker(reference.encoder, reference.backend, reference.config).score(
        [query] * 3, passages
    )
    assert max(abs(a - b) for a, b in zip(expected, logits_only)) > 1.0  # the prior is in
    for kind, folder in (("export", out), ("torch", tiny_bert_with_prior_dir)):
        engine = load_engine(kind, folder, batch_size=2)
        assert type(engine.prior.encoder).__name__ == (
            "OnnxEncoder" if kind == "export" else "Embedder"
        )
        assert engine.score(engine.encode(query, passages, truncate=True)) == pytest.approx(
            expected, abs=1e-3
        ), kind


def _prior_export(folder, small_beir, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "onnx"
    params = ExportParams(
        **{
            "variants": ["fp32", "int8"],
            "gate_queries": 0,
            "gate_top_k": 5,
            "parity_pairs": 16,
            **overrides,
        }
    )
    return run_export(params, FIRST_STAGE, folder, small_beir, out, tmp_path / "e.json"), out


QUERY = "what does vacuum do"
PASSAGES = ["VACUUM reclaims storage.", "A cursor walks rows.", "Vacuum it.", "An index."]


def _served_and_pytorch(engine, model_dir) -> tuple[list[float], list[float]]:
    """The served engine's scores of QUERY x PASSAGES, and the model's own in PyTorch fp32."""
    served = engine.score(engine.encode(QUERY, PASSAGES, truncate=True))
    expected = Reranker.from_pretrained(str(model_dir), device="cpu").score(
        [QUERY] * len(PASSAGES), PASSAGES
    )
    return served, expected


def test_the_prior_is_served_in_int8_when_it_passes_the_gate(
    tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    from reranktune.serve.engines import load_engine

    # the tiny cross-encoder is random: loose gates, the real MiniLM prior is what is judged
    report, out = _prior_export(
        tiny_bert_with_prior_dir,
        small_beir,
        tmp_path,
        monkeypatch,
        lossy_min_spearman=0.5,
        max_ndcg_drop=1.0,
    )
    prior = report["prior"]
    assert prior["accepted"] and prior["max_abs_diff"] < 1e-4  # the fp32 graph, as before
    int8 = prior["int8"]
    assert int8["accepted"] and int8["spearman"] > 0.9 and int8["NDCG@10"] is not None, int8
    assert prior["onnx_file"] == int8["onnx_file"] == "prior/model.int8.onnx"
    assert (out / "prior" / "model.int8.onnx").exists() and (out / "prior" / "model.onnx").exists()
    assert not (out / "prior" / "model.opt.onnx").exists()
    graph = onnx.load(str(out / "prior" / "model.int8.onnx")).graph
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)
    assert RerankerConfig.load(out).prior.dense.onnx_file == "model.int8.onnx"
    engine = load_engine("export", out)
    assert Path(engine.prior.encoder.session._model_path).name == "model.int8.onnx"
    served, expected = _served_and_pytorch(engine, tiny_bert_with_prior_dir)
    assert served == pytest.approx(expected, abs=0.5)  # prior weight 20 x INT8 cosine rounding


@pytest.mark.parametrize("how", ["corrupted graph", "strict tolerance"])
def test_a_prior_int8_that_fails_the_gate_leaves_the_fp32_graph_served(
    how, tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    from reranktune.export import run as run_module
    from reranktune.serve.engines import load_engine

    overrides = {"lossy_min_spearman": 0.5, "max_ndcg_drop": 1.0}
    if how == "corrupted graph":  # the quantiser's output scores garbage
        real = run_module.quantize_int8

        def corrupt(src, dst):
            real(src, dst)
            shutil.copy(src, dst)
            _perturb(dst, scale=3.0)

        monkeypatch.setattr(run_module, "quantize_int8", corrupt)
    else:  # INT8 rounding reorders some of the 60 pairs' prior scores: rank correlation < 1
        overrides["lossy_min_spearman"] = 1.0
    report, out = _prior_export(
        tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch, **overrides
    )
    int8 = report["prior"]["int8"]
    assert not int8["accepted"] and "lossy_min_spearman" in int8["rejected_because"], int8
    assert int8["onnx_file"] is None and not (out / "prior" / "model.int8.onnx").exists()
    assert report["prior"]["accepted"] and report["prior"]["onnx_file"] == "prior/model.onnx"
    assert RerankerConfig.load(out).prior.dense.onnx_file == "model.onnx"
    engine = load_engine("export", out)
    assert Path(engine.prior.encoder.session._model_path).name == "model.onnx"
    served, expected = _served_and_pytorch(engine, tiny_bert_with_prior_dir)
    assert served == pytest.approx(expected, abs=1e-3)


def test_served_speed_times_the_prior_without_its_cache(tiny_bert_dir):
    """Serve's cache makes recurring passages cheap: each timing pays for every embedding."""
    from reranktune.reranker.config import DensePriorConfig, PriorConfig
    from reranktune.reranker.prior import Prior

    calls = []

    def encoder(texts):
        calls.append(len(texts))
        return np.full((len(texts), 4), 0.5, np.float32)

    config = PriorConfig(dense=DensePriorConfig(weight=1.0, source_model="fake", max_length=16))
    reranker = Reranker.from_pretrained(str(tiny_bert_dir), device="cpu", max_length=64)
    served = reranker.with_backend(reranker.backend, Prior(config, encoder))
    corpus = {f"d{i}": {"title": "", "text": f"passage {i}"} for i in range(6)}
    queries = {"q0": "query zero", "q1": "query one"}
    candidates = {"q0": {f"d{i}": 0.0 for i in range(3)}, "q1": {f"d{i}": 0.0 for i in (3, 4, 5)}}
    ranking = RankingSet(BeirData(corpus, queries, {}, {}), candidates, "dense")
    served.score(["query zero"], ["passage 0"])  # fills the served prior's own cache
    calls.clear()
    for _ in range(2):  # the first 4 pairs: q0 x 3 and q1 x 1, so 2 queries and 4 passages
        assert ranking.served_speed(served, 4, pairs=4) > 0
    assert calls == [2, 4, 2, 4]


def _bf16_export(folder, small_beir, tmp_path, monkeypatch, variants):
    """An export on a CPU taken to have bf16 units, with gates loose enough for the tiny random
    cross-encoder, whose logits are too flat to rank by."""
    monkeypatch.setattr("reranktune.export.run.bf16_enabled", lambda mode, device: True)
    return _prior_export(
        folder,
        small_beir,
        tmp_path,
        monkeypatch,
        variants=variants,
        lossy_min_spearman=-1.0,
        max_ndcg_drop=1.0,
    )


def test_bf16_served_by_pytorch_when_it_times_fastest(
    tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    """On a CPU with bf16 units the PyTorch weights in bf16 are a variant like the graphs: gated,
    timed, and when fastest what serve loads, the prior's encoder in bf16 with them."""
    from reranktune.serve.engines import load_engine

    speeds = {"fp32": 10.0, "int8": 20.0, "bf16": 30.0}
    monkeypatch.setattr(
        "reranktune.export.gate.RankingSet.served_speed",
        lambda self, reranker, batch_size, pairs: speeds[
            "bf16" if isinstance(reranker.backend, TorchBackend) else _variant_of(reranker)
        ],
    )
    report, out = _bf16_export(
        tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch, ["fp32", "int8", "bf16"]
    )
    bf16 = report["bf16"]
    assert bf16["accepted"] and bf16["max_abs_diff"] < 1e-2 and bf16["NDCG@10"] is not None, bf16
    assert bf16["provider"] == "PyTorch bf16 autocast (CPU)"
    assert report["prior"]["bf16"]["spearman"] > 0.9, report["prior"]
    config = RerankerConfig.load(out)
    assert config.onnx.default_variant == "bf16" and config.onnx.runtime == "torch"
    assert config.onnx.file == "model.safetensors" and (out / "model.safetensors").exists()
    assert config.prior.dense.bf16
    assert config.onnx.fastest_graph == "model.int8.onnx"  # backend="onnx" still finds a graph
    monkeypatch.setattr("reranktune.reranker.model.bf16_enabled", lambda mode, device: True)
    engine = load_engine("export", out)
    backend = engine.reranker.backend
    assert isinstance(backend, TorchBackend) and backend.bf16 and backend.device == "cpu"
    assert type(engine.prior.encoder).__name__ == "Embedder" and engine.prior.encoder.bf16
    served, expected = _served_and_pytorch(engine, tiny_bert_with_prior_dir)
    assert served == pytest.approx(expected, abs=0.5)  # bf16 rounding of logit and cosines

    # the folder served on a CPU without bf16 units: the fastest graph, nothing in bf16
    monkeypatch.setattr("reranktune.reranker.model.bf16_enabled", lambda mode, device: False)
    engine = load_engine("export", out)
    assert isinstance(engine.reranker.backend, SessionBackend)
    assert _variant_of(engine.reranker) == "int8"
    assert not getattr(engine.prior.encoder, "bf16", False)
    served, expected = _served_and_pytorch(engine, tiny_bert_with_prior_dir)
    assert served == pytest.approx(expected, abs=0.5)  # int8 logit


@pytest.mark.parametrize("how", ["no bf16 on this CPU", "rejected by the gate"])
def test_bf16_is_not_offered_without_native_bf16_or_past_the_gate(
    how, tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    native = how != "no bf16 on this CPU"
    monkeypatch.setattr("reranktune.export.run.bf16_enabled", lambda mode, device: native)
    report, out = _prior_export(
        tiny_bert_with_prior_dir,
        small_beir,
        tmp_path,
        monkeypatch,
        variants=["fp32", "bf16"],
        lossy_min_spearman=1.0,  # bf16 rounding reorders some of the random model's scores
    )
    assert ("bf16" in report) == native
    if native:
        assert not report["bf16"]["accepted"], report["bf16"]
    config = RerankerConfig.load(out)
    assert config.onnx.default_variant == "fp32" and config.onnx.runtime == "onnx"
    assert not list(out.glob("*.safetensors")) and not config.prior.dense.bf16


def test_the_serve_bench_rebuilds_the_earlier_default_from_an_export(
    tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch
):
    """bench/serve.py's earlier_default: the same export served as before the default was
    measured (fused fp32 graph, fp32 prior graph), whatever the export picked."""
    import importlib.util

    from reranktune.serve.engines import load_engine

    _, out = _bf16_export(
        tiny_bert_with_prior_dir, small_beir, tmp_path, monkeypatch, ["fp32", "optimized", "bf16"]
    )
    spec = importlib.util.spec_from_file_location(
        "bench_serve", Path(__file__).resolve().parents[1] / "bench" / "serve.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    earlier = bench.earlier_default(out, tmp_path)
    config = RerankerConfig.load(earlier)
    assert config.onnx.default_variant == "optimized" and config.onnx.runtime == "onnx"
    assert config.prior.dense.onnx_file == "model.onnx" and not config.prior.dense.bf16
    engine = load_engine("export", earlier)
    assert Path(engine.reranker.backend.session._model_path).name == "model.opt.onnx"
    assert Path(engine.prior.encoder.session._model_path).name == "model.onnx"
