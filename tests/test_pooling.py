import numpy as np
import pytest

from distilframe._pool import l2_normalize, pool, softmax


def test_mean_pooling_averages_attended_tokens_only():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    out = pool(hidden, mask, "mean")
    for i in range(3):
        n = mask[i].sum()
        np.testing.assert_allclose(out[i], hidden[i, :n].mean(axis=0), rtol=1e-6, atol=1e-7)
    assert out.dtype == np.float32


def test_cls_pooling_takes_the_first_token():
    hidden = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(pool(hidden, np.ones((2, 3)), "cls"), hidden[:, 0])


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling='avg'"):
        pool(np.zeros((1, 1, 1), np.float32), np.ones((1, 1)), "avg")


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])


def test_softmax_is_stable_and_sums_to_one():
    logits = np.array([[1000.0, 1001.0], [-3.0, 2.0]], dtype=np.float32)
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_allclose(p[1, 1], 1 / (1 + np.exp(-5.0)), rtol=1e-6)
    assert p.dtype == np.float32
