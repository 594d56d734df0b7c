import numpy as np

from reranktune.retrieval import index as retrieval


def test_faiss_and_torch_fallback_return_the_same_neighbours(monkeypatch):
    rng = np.random.default_rng(0)
    passages = rng.normal(size=(300, 24)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    queries = passages[:7] + 0.01
    with_faiss = retrieval.DenseIndex(passages).search(queries, 10)
    monkeypatch.setattr(retrieval, "faiss", None)
    with_torch = retrieval.DenseIndex(passages).search(queries, 10)
    np.testing.assert_array_equal(with_faiss[1], with_torch[1])
    np.testing.assert_allclose(with_faiss[0], with_torch[0], atol=1e-5)
    assert with_torch[1][:, 0].tolist() == list(range(7))
