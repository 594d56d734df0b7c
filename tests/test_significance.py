import numpy as np
import pytest

from reranktune.evaluation.significance import paired_randomisation_test


def test_identical_systems_are_not_significant():
    a = {f"q{i}": float(i % 7) / 7 for i in range(40)}
    result = paired_randomisation_test(a, dict(a), n_permutations=2000)
    assert result["mean_difference"] == 0.0 and result["ties"] == 40
    assert result["p_value"] == 1.0


def test_a_consistent_gain_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    a = {f"q{i}": float(x) for i, x in enumerate(rng.uniform(0, 1, 100))}
    better = {q: v + 0.05 + 0.02 * rng.normal() for q, v in a.items()}
    noisy = {q: v + 0.2 * rng.normal() for q, v in a.items()}
    assert paired_randomisation_test(a, better, n_permutations=5000)["p_value"] < 0.001
    assert paired_randomisation_test(a, noisy, n_permutations=5000)["p_value"] > 0.05


def test_the_test_is_symmetric_and_deterministic():
    rng = np.random.default_rng(1)
    a = {f"q{i}": float(x) for i, x in enumerate(rng.uniform(0, 1, 30))}
    b = {q: v + 0.1 * rng.normal() for q, v in a.items()}
    ab, ba = paired_randomisation_test(a, b, seed=3), paired_randomisation_test(b, a, seed=3)
    assert ab["p_value"] == ba["p_value"] and ab["mean_difference"] == pytest.approx(-ba["mean_difference"])
    assert paired_randomisation_test(a, b, seed=3) == ab


def test_only_queries_scored_by_both_count():
    with pytest.raises(ValueError):
        paired_randomisation_test({"q1": 1.0}, {"q2": 1.0})
    result = paired_randomisation_test({"q1": 0.0, "q2": 0.5}, {"q1": 1.0, "q3": 0.0}, n_permutations=100)
    assert result["queries"] == 1 and result["wins"] == 1
