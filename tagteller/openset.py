"""The numbers behind "sure", "not sure" and "unknown": temperature, calibration error, the
open-set gate and its threshold, and the generated images every gate learns to reject.

numpy only (the training side fits with it, the tests and benchmarks measure with it):

- :func:`fit_temperature`: the temperature T that minimises the negative log-likelihood of the
  validation labels under ``softmax(logits / T)`` (Guo et al. 2017), by a log-spaced search
  refined around its best point (a one-parameter convex problem: no optimiser needed).
- calibration error: :func:`tagteller.evaluate.metrics.top1_calibration_error` (the ECE of
  ``tagteller evaluate``) with :data:`ECE_BINS` equal-width confidence bins; :func:`cross_fitted_ece`
  on halves; :func:`ece_noise_floor`: what a perfectly calibrated model would still score on so few images;
  :func:`pooled_calibration`: the same over the validation splits of repeated trainings of one recipe,
  pooled, for a floor low enough to tell 0.05 from noise on a small dataset.
- :func:`fit_gate`: balanced, L2-regularised logistic regression telling the domain's own
  (training) images from unknown ones, on L2-normalised penultimate features (outlier exposure,
  Hendrycks et al. 2019). Its probability of "unknown" is the model's ``ood_score``.
- :func:`threshold_for_false_rejection`: the score above which an image is ``unknown``, set so
  that at most the given share of the domain's own validation images is rejected.
- :func:`synthetic_unknowns`: noise, flat colours, gradients and stripes;
  :func:`prepared_synthetic_unknowns`: the same drawn at other sizes and shapes and put through
  the model's own preprocessing, as a user's picture of noise would reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tagteller.errors import TagtellerError
from tagteller.evaluate import metrics

ECE_BINS = 15
FALSE_REJECTION = 0.05
THRESHOLD_MARGIN = 1e-5


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def averaged_probabilities(branches: list[np.ndarray], temperature: float = 1.0) -> np.ndarray:
    """The mean of ``softmax(logits / T)`` over branches (one branch, or an image and its mirror)."""
    return np.mean([softmax(np.asarray(b, np.float64) / temperature) for b in branches], axis=0)


def negative_log_likelihood(branches: list[np.ndarray], labels: np.ndarray, temperature: float) -> float:
    p = averaged_probabilities(branches, temperature)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(branches: list[np.ndarray], labels: np.ndarray) -> float:
    """The NLL-minimising temperature over [0.05, 20]."""
    labels = np.asarray(labels, int)
    grid = np.geomspace(0.05, 20.0, 61)
    losses = [negative_log_likelihood(branches, labels, t) for t in grid]
    best = int(np.argmin(losses))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.geomspace(low, high, 41)
    losses = [negative_log_likelihood(branches, labels, t) for t in fine]
    return float(fine[int(np.argmin(losses))])


def check_temperature(value: float, what: str = "temperature") -> float:
    """``value`` when it is a usable temperature (finite and above 0), else one clear error."""
    if not (np.isfinite(value) and value > 0):
        raise TagtellerError(f"{what} {value!r}: must be a positive number")
    return float(value)


def cross_fitted_ece(branches: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> float:
    """ECE of temperature scaling on images it was not fitted on: two random halves, each
    scaled with the temperature fitted on the other, the two ECEs averaged."""
    return _on_cross_fitted_halves(branches, labels, seed,
                                   lambda p, y: metrics.top1_calibration_error(p, y, ECE_BINS))


def _cross_fitted(branches: list[np.ndarray], labels: np.ndarray, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two random halves of the images; for each, its indices and its probabilities under the
    temperature fitted on the other half."""
    labels = np.asarray(labels, int)
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    for fit_on, measure_on in (halves, halves[::-1]):
        if len(fit_on) == 0 or len(measure_on) == 0:
            continue
        t = fit_temperature([b[fit_on] for b in branches], labels[fit_on])
        yield measure_on, averaged_probabilities([b[measure_on] for b in branches], t)


def _on_cross_fitted_halves(branches: list[np.ndarray], labels: np.ndarray, seed: int, measure) -> float:
    """``measure(probabilities, labels)`` on each of two random halves, scaled with the
    temperature fitted on the other half; the mean of the two."""
    labels = np.asarray(labels, int)
    values = [measure(p, labels[on]) for on, p in _cross_fitted(branches, labels, seed)]
    return float(np.mean(values)) if values else 0.0


def cross_fitted_probabilities(branches: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every image's probabilities under the temperature fitted on the *other* half of the images
    (the halves of :func:`cross_fitted_ece`)."""
    out = np.zeros(np.asarray(branches[0]).shape, np.float64)
    for on, p in _cross_fitted(branches, labels, seed):
        out[on] = p
    return out


def ece_noise_floor(confidence: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a *perfectly* calibrated model would still show on this many images: each image
    right with probability equal to its confidence, ECE measured, averaged over ``draws``. On a
    few dozen images this floor is itself several points, so an ECE near it is as good as the
    split can show."""
    c = np.asarray(confidence, np.float64)
    if len(c) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(draws):
        correct = rng.random(len(c)) < c
        total += metrics.expected_calibration_error(metrics.calibration_bins(c, correct, bins))
    return float(total / draws)


def cross_fitted_ece_floor(branches: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> float:
    """:func:`ece_noise_floor` for the halves :func:`cross_fitted_ece` measures on, averaged."""
    return _on_cross_fitted_halves(branches, labels, seed, lambda p, _: ece_noise_floor(p.max(axis=1), seed=seed))


def pooled_calibration(repeats: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> dict[str, Any]:
    """Calibration of one recipe over several trainings: ``repeats`` holds each training's
    validation ``(logits, labels)``. On a validation split of a few dozen images the ECE of even a
    perfectly calibrated model is 0.05-0.15 (:func:`ece_noise_floor`), so a 0.05 target cannot be
    told from noise there; pooled over repeats it can.

    - ``ece``: every repeat's images scaled as :func:`cross_fitted_ece` does (the temperature
      fitted on the other half of that repeat's split, never on the image itself), all pooled
      into one ECE; ``noise_floor``: what a perfectly calibrated model would score on that pool.
    - ``temperature``: the one temperature fitted on every repeat's validation logits (the
      recipe's temperature: ``tagteller train --temperature`` ships a model with it instead of
      one fitted on its own small split); ``ece_recipe_temperature``: how well that transfers to
      a training it was not fitted on: each repeat scaled with the temperature fitted on the
      *other* repeats, pooled.
    """
    if not repeats:
        raise ValueError("pooled_calibration needs at least one repeat")
    labels = [np.asarray(y, int) for _, y in repeats]
    logits = [np.asarray(z, np.float64) for z, _ in repeats]
    halves = np.concatenate([cross_fitted_probabilities([z], y, seed + i)
                             for i, (z, y) in enumerate(zip(logits, labels))])
    every = np.concatenate(labels)
    figures: dict[str, Any] = {
        "images": int(len(every)), "repeats": len(repeats), "bins": ECE_BINS,
        "ece": round(metrics.top1_calibration_error(halves, every, ECE_BINS), 6),
        "noise_floor": round(ece_noise_floor(halves.max(axis=1), seed=seed), 6),
    }
    figures["temperature"] = round(fit_temperature([np.concatenate(logits)], every), 6)
    if len(repeats) > 1:
        scaled = []
        for i, z in enumerate(logits):
            others = [k for k in range(len(logits)) if k != i]
            t = fit_temperature([np.concatenate([logits[k] for k in others])], np.concatenate([labels[k] for k in others]))
            scaled.append(averaged_probabilities([z], t))
        figures["ece_recipe_temperature"] = round(
            metrics.top1_calibration_error(np.concatenate(scaled), every, ECE_BINS), 6)
    return figures


def l2_normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


#: The gate's fit. It used to stop after 600 steps with l2 1e-3, well before it converged: refit to
#: convergence (8,000 steps, l2 1e-5), the apparel gate went from rejecting 88% to 93% of book
#: covers and from 65% to 89% of shoe photos, its own false rejection held at 5% (docs/training.md).
GATE_L2 = 1e-5
GATE_MAX_STEPS = 8000
#: The fit stops early once 200 steps lower the loss by less than this.
GATE_TOLERANCE = 1e-6


def fit_gate(own: np.ndarray, unknown: np.ndarray, l2: float = GATE_L2, steps: int = GATE_MAX_STEPS,
             learning_rate: float = 0.5) -> tuple[np.ndarray, float]:
    """Weights ``w`` and bias ``b`` such that ``sigmoid(l2_normalise(f) @ w + b)`` is the
    probability that features ``f`` are of an unknown image; the two sides weigh the same
    however many images each has. Full-batch gradient descent with Nesterov momentum, for at
    most ``steps`` steps (fewer once the loss stops falling: :data:`GATE_TOLERANCE`)."""
    x = np.concatenate([l2_normalise(own), l2_normalise(unknown)])
    y = np.concatenate([np.zeros(len(own)), np.ones(len(unknown))])
    weight = np.where(y == 1, 0.5 / max(len(unknown), 1), 0.5 / max(len(own), 1))
    # Features are unit vectors: centre them so the bias is not fighting a shared direction.
    mean = x.mean(axis=0)
    xc = x - mean
    w = np.zeros(x.shape[1])
    b = 0.0
    vw, vb = np.zeros_like(w), 0.0
    scale = learning_rate * (1.0 / max(float((xc ** 2).sum(axis=1).max()), 1e-6)) * 4.0
    last_loss = np.inf
    for step in range(steps):
        if step % 200 == 0:
            z = xc @ w + b
            loss = float((weight * (np.logaddexp(0.0, z) - y * z)).sum() + 0.5 * l2 * (w @ w))
            if last_loss - loss < GATE_TOLERANCE:
                break
            last_loss = loss
        lw, lb = w + 0.9 * vw, b + 0.9 * vb
        err = (sigmoid(xc @ lw + lb) - y) * weight
        gw = xc.T @ err + l2 * lw
        gb = err.sum()
        vw, vb = 0.9 * vw - scale * gw, 0.9 * vb - scale * gb
        w, b = w + vw, b + vb
    return w.astype(np.float32), float(b - mean @ w)


def gate_scores(features: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return sigmoid(l2_normalise(features) @ np.asarray(w, np.float64) + b)


def threshold_for_false_rejection(own_scores: np.ndarray, false_rejection: float = FALSE_REJECTION) -> float:
    """The smallest threshold (an image is unknown when its score is above it) that rejects at
    most ``false_rejection`` of ``own_scores``."""
    s = np.sort(np.asarray(own_scores, np.float64))
    if len(s) == 0:
        return 0.5
    allowed = int(np.floor(false_rejection * len(s)))  # images that may be rejected
    # A hair above the kept image's score: another batch size or an int8 copy moves scores by
    # about 1e-7, which must not tip that image over.
    return float(s[len(s) - 1 - allowed]) + THRESHOLD_MARGIN


SYNTHETIC_KINDS = ("noise", "smooth-noise", "flat", "gradient", "stripes")


def synthetic_unknowns(count: int, height: int, width: int, channels: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``count`` float32 images in [0, 255] and their kinds, cycling through: uniform noise,
    smooth (blocky, upsampled) noise, a flat colour, a linear gradient, stripes."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, height, width, channels), np.float32)
    names = []
    for i in range(count):
        kind = SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)]
        names.append(kind)
        out[i] = _draw(kind, rng, height, width, channels)
    return out, names


def _draw(kind: str, rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    if kind == "noise":
        return rng.uniform(0, 255, (height, width, channels))
    if kind == "smooth-noise":
        cells = int(rng.integers(2, 9))
        small = rng.uniform(0, 255, (cells, cells, channels))
        return np.kron(small, np.ones((height // cells + 1, width // cells + 1, 1)))[:height, :width]
    if kind == "flat":
        return np.broadcast_to(rng.uniform(0, 255, channels), (height, width, channels))
    if kind == "gradient":
        a, b = rng.uniform(0, 255, channels), rng.uniform(0, 255, channels)
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
        ramp = a + (b - a) * t[:, None]
        img = ramp[None, :, :] if len(t) == width else ramp[:, None, :]
        return np.broadcast_to(img, (height, width, channels))
    period = int(rng.integers(2, 16))
    a, b = rng.uniform(0, 255, channels), rng.uniform(0, 255, channels)
    band = (np.arange(width) // period) % 2
    return np.broadcast_to(np.where(band[:, None] == 1, a, b)[None], (height, width, channels))


#: Sizes at which :func:`prepared_synthetic_unknowns` draws images, as multiples of the model's
#: input (height, width): the same, larger, and larger in one direction only.
SYNTHETIC_SCALES = ((1.0, 1.0), (1.15, 1.15), (2.0, 2.0), (1.5, 1.0), (1.0, 1.5))


def prepared_synthetic_unknowns(count: int, size: tuple[int, int], pre: Any, seed: int) -> tuple[np.ndarray, list[str]]:
    """``count`` generated images (the kinds of :func:`synthetic_unknowns`, in turn), each drawn
    in colour at one of :data:`SYNTHETIC_SCALES` times the model's input size and then decoded by
    :func:`tagteller.imaging.prepare` with the model's preprocessing ``pre``: resizing turns pixel
    noise into smoother noise, and trimming or inverting changes flats and stripes, so the gate
    must see them the way the engine will show them. Float32, at ``size``."""
    from tagteller.imaging import prepare

    height, width = size
    rng = np.random.default_rng(seed)
    out = np.empty((count, height, width, pre.channels), np.float32)
    names: list[str] = []
    for i in range(count):
        kind = SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)]
        sh, sw = SYNTHETIC_SCALES[(i // len(SYNTHETIC_KINDS)) % len(SYNTHETIC_SCALES)]
        image = _draw(kind, rng, max(2, round(height * sh)), max(2, round(width * sw)), 3)
        out[i] = prepare(np.ascontiguousarray(image, np.float32).round().astype(np.uint8), size, pre)
        names.append(kind)
    return out, names
