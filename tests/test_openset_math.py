"""The numbers behind calibration and the open-set gate (tagteller.openset), checked against
scikit-learn and hand-worked cases; and the ONNX rewrite on a tiny generated classifier."""

from __future__ import annotations

import numpy as np
import pytest

from tagteller import openset
from tagteller.evaluate import metrics


def test_ece_matches_a_hand_worked_case():
    # Two bins used: confidence 0.9 (3 images, 2 right) and 0.6 (1 image, right).
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 0])
    # bin 0.9: accuracy 2/3, confidence 0.9 -> 3/4 * 0.2333; bin 0.6: 1/4 * |1 - 0.6|
    assert metrics.top1_calibration_error(p, labels, n_bins=openset.ECE_BINS) == pytest.approx(0.75 * (0.9 - 2 / 3) + 0.25 * 0.4)
    assert metrics.top1_calibration_error(np.eye(3), np.arange(3), n_bins=openset.ECE_BINS) == 0.0


def test_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 4))
    true_t = 2.5
    p = openset.softmax(logits / true_t)
    labels = np.array([rng.choice(4, p=row) for row in p])
    fitted = openset.fit_temperature([logits], labels)
    assert fitted == pytest.approx(true_t, rel=0.1)
    assert metrics.top1_calibration_error(openset.averaged_probabilities([logits], fitted), labels, n_bins=openset.ECE_BINS) < 0.03
    assert openset.cross_fitted_ece([logits], labels) < 0.04
    assert metrics.top1_calibration_error(openset.softmax(logits), labels, n_bins=openset.ECE_BINS) > 0.1  # overconfident at T=1


def test_gate_separates_like_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    own = rng.normal(0, 1, (300, 16)) + np.r_[3.0, np.zeros(15)]
    unknown = rng.normal(0, 1, (120, 16)) + np.r_[0.0, 3.0, np.zeros(14)]
    w, b = openset.fit_gate(own, unknown)
    ours = np.r_[openset.gate_scores(own, w, b) > 0.5, openset.gate_scores(unknown, w, b) <= 0.5]
    x = openset.l2_normalise(np.concatenate([own, unknown]))
    y = np.r_[np.zeros(300), np.ones(120)]
    oracle = LogisticRegression(class_weight="balanced", C=100.0).fit(x, y)
    ours_accuracy = 1 - ours.mean()
    assert ours_accuracy >= oracle.score(x, y) - 0.02
    assert ours_accuracy > 0.95


def test_threshold_rejects_at_most_the_share_asked():
    scores = np.linspace(0, 1, 101)
    t = openset.threshold_for_false_rejection(scores, 0.05)
    assert (scores > t).mean() <= 0.05 and (scores > t).sum() == 5
    assert (np.array([0.3]) > openset.threshold_for_false_rejection(np.array([0.3]))).sum() == 0


def test_synthetic_unknowns_are_in_range_and_of_every_kind():
    images, kinds = openset.synthetic_unknowns(10, 20, 30, 3, seed=0)
    assert images.shape == (10, 20, 30, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    assert set(kinds) == {"noise", "smooth-noise", "flat", "gradient", "stripes"}
    flat = images[kinds.index("flat")]
    assert np.ptp(flat.reshape(-1, 3), axis=0).max() == 0


def test_rewrite_adds_a_calibrated_softmax_a_score_and_an_embedding():
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from tagteller.openset_graph import add_open_set, find_heads
    from tests.builders import colour_graph

    proto = colour_graph(("red", "green", "blue"), size=(8, 8))
    rng = np.random.default_rng(2)
    colours = np.eye(3) * 220 + 20
    labels = rng.integers(0, 3, 90)
    images = (colours[labels][:, None, None, :] + rng.normal(0, 10, (90, 8, 8, 3))).clip(0, 255).astype(np.float32)
    assert len(find_heads(proto)) == 1
    fit = add_open_set(proto, images[:45], labels[:45], images[45:], np.zeros((0, 8, 8, 3), np.float32), {})
    session = ort.InferenceSession(fit.proto.SerializeToString())
    assert [o.name for o in session.get_outputs()] == ["probs", "ood_score", "embedding"]
    probs, score, emb = session.run(None, {"image": images[:45]})
    before = ort.InferenceSession(proto.SerializeToString()).run(None, {"image": images[:45]})[0]
    assert (probs.argmax(1) == before.argmax(1)).all()
    t = fit.calibration["temperature"]
    expected = openset.softmax(np.log(before.astype(np.float64)) / t)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    threshold = fit.open_set["threshold"]
    assert (score > threshold).mean() <= 0.05
    assert fit.open_set["generated_rejection"]["flat"] >= 0.5  # grey flats are unlike saturated tints


def test_strip_open_set_gives_back_the_network_and_a_refit_matches_a_first_fit():
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from tagteller.openset_graph import add_open_set, strip_open_set
    from tests.builders import colour_graph

    proto = colour_graph(("red", "green", "blue"), size=(8, 8))
    for i, node in enumerate(proto.graph.node):  # Keras names its layers after the model: tagteller_...
        node.name = f"tagteller_network/layer{i}"
    rng = np.random.default_rng(3)
    colours = np.eye(3) * 220 + 20
    labels = rng.integers(0, 3, 90)
    images = (colours[labels][:, None, None, :] + rng.normal(0, 10, (90, 8, 8, 3))).clip(0, 255).astype(np.float32)
    first = add_open_set(proto, images[:45], labels[:45], images[45:], np.zeros((0, 8, 8, 3), np.float32), {})
    added = {n.name for n in first.proto.graph.node} - {n.name for n in proto.graph.node}
    stripped = strip_open_set(first.proto)
    assert [o.name for o in stripped.graph.output] == ["probs"]
    assert [n.name for n in stripped.graph.node] == [n.name for n in proto.graph.node]
    assert not added & {n.name for n in stripped.graph.node}
    assert {t.name for t in stripped.graph.initializer} == {t.name for t in proto.graph.initializer}
    original = ort.InferenceSession(proto.SerializeToString()).run(None, {"image": images})[0]
    again = ort.InferenceSession(stripped.SerializeToString()).run(None, {"image": images})[0]
    np.testing.assert_allclose(again, original, atol=1e-6)
    refit = add_open_set(stripped, images[:45], labels[:45], images[45:], np.zeros((0, 8, 8, 3), np.float32), {})
    assert refit.open_set["threshold"] == pytest.approx(first.open_set["threshold"], abs=1e-6)
    assert refit.calibration == first.calibration
    assert strip_open_set(proto).SerializeToString() == proto.SerializeToString()  # nothing to strip


def test_prepared_synthetic_unknowns_come_through_the_models_preprocessing():
    from tagteller.imaging import prepare
    from tagteller.preprocessing import Preprocessing

    grey = Preprocessing(color_mode="L", invert="never")
    images, kinds = openset.prepared_synthetic_unknowns(25, (20, 30), grey, seed=4)
    assert images.shape == (25, 20, 30, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    assert kinds[:5] == list(openset.SYNTHETIC_KINDS) and len(set(kinds)) == 5
    # drawn larger than the input, then resized: pixel noise comes out smoother than drawn
    noise = images[[i for i, k in enumerate(kinds) if k == "noise"]]
    drawn = openset.synthetic_unknowns(1, 20, 30, 1, seed=0)[0][0]
    assert noise[2].std() < drawn.std()  # the third noise image was drawn at twice the size
    flat = images[kinds.index("flat")]
    assert np.ptp(flat) == 0
    again, _ = openset.prepared_synthetic_unknowns(25, (20, 30), grey, seed=4)
    np.testing.assert_array_equal(images, again)
    assert prepare(np.zeros((5, 5, 3), np.uint8), (20, 30), grey).shape == (20, 30, 1)


def test_ece_noise_floor_is_what_a_calibrated_model_scores_and_shrinks_with_more_images():
    rng = np.random.default_rng(7)
    small = rng.uniform(0.4, 1.0, 60)
    large = rng.uniform(0.4, 1.0, 6000)
    floor_small, floor_large = openset.ece_noise_floor(small), openset.ece_noise_floor(large)
    assert floor_large < 0.02 < floor_small < 0.2
    # a model that is calibrated by construction scores about its floor
    scores = []
    for _ in range(40):
        correct = rng.random(60) < small
        probs = np.stack([small, 1 - small], axis=1)
        labels = np.where(correct, 0, 1)
        scores.append(metrics.top1_calibration_error(probs, labels, n_bins=openset.ECE_BINS))
    assert np.mean(scores) == pytest.approx(floor_small, rel=0.25)


def _repeats_made_at(temperatures: list[float], images: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation logits of several 'trainings' whose labels were drawn from softmax(logits / T)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in temperatures:
        logits = rng.normal(0, 3, (images, 5))
        p = openset.softmax(logits / t)
        out.append((logits, np.array([rng.choice(5, p=row) for row in p])))
    return out


def test_cross_fitted_probabilities_use_the_other_halfs_temperature():
    (logits, labels), = _repeats_made_at([2.0], 400, seed=3)
    p = openset.cross_fitted_probabilities([logits], labels, seed=5)
    assert p.shape == logits.shape and np.allclose(p.sum(axis=1), 1.0)
    order = np.random.default_rng(5).permutation(len(labels))
    first, second = order[:200], order[200:]
    t_second = openset.fit_temperature([logits[second]], labels[second])
    np.testing.assert_allclose(p[first], openset.softmax(logits[first] / t_second))
    # the same halves cross_fitted_ece averages over
    halves = [metrics.top1_calibration_error(p[h], labels[h], openset.ECE_BINS) for h in (first, second)]
    assert openset.cross_fitted_ece([logits], labels, seed=5) == pytest.approx(np.mean(halves))


def test_pooled_calibration_tells_0_05_from_noise_where_one_small_split_cannot():
    # ten 'trainings' of 100 validation images, each off by its own temperature near 2
    repeats = _repeats_made_at([1.8, 2.2, 2.0, 1.9, 2.1, 2.0, 1.7, 2.3, 2.0, 1.9], 100, seed=11)
    pooled = openset.pooled_calibration(repeats, seed=0)
    assert pooled["images"] == 1000 and pooled["repeats"] == 10
    single_floor = openset.cross_fitted_ece_floor([repeats[0][0]], repeats[0][1])
    assert pooled["noise_floor"] < 0.05 < single_floor  # one split of 100 cannot show 0.05; the pool can
    assert pooled["ece"] < 0.05 + pooled["noise_floor"]
    assert pooled["ece_recipe_temperature"] < 0.05
    # unscaled (T = 1), the same answers are plainly overconfident: the measure can fail
    raw = np.concatenate([openset.softmax(z) for z, _ in repeats])
    assert metrics.top1_calibration_error(raw, np.concatenate([y for _, y in repeats]), openset.ECE_BINS) > 0.1
    with pytest.raises(ValueError):
        openset.pooled_calibration([])
