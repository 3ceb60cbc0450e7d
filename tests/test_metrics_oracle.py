"""tagteller.evaluate.metrics against scikit-learn, the oracle, on random answers.

Every figure tagteller quotes for a model (``tagteller evaluate``, the install decision, ``tagteller
demo``) comes from :func:`tagteller.evaluate.metrics.score`; these tests hold it to scikit-learn's
definitions: accuracy, the confusion matrix, per-class precision and recall, and the macro and
weighted averages (macro over the classes present in the truth or the predictions).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagteller.evaluate import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")
# sklearn warns when a random draw holds a single class; the figures are still defined.
pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")


@st.composite
def answers(draw, no_answer: bool = False):
    """``(n_classes, true, predicted)``: random class indices, some classes possibly absent;
    with ``no_answer``, some predictions are :data:`metrics.NO_ANSWER`."""
    n_classes = draw(st.integers(1, 6))
    size = draw(st.integers(1, 60))
    low = metrics.NO_ANSWER if no_answer else 0
    true = draw(st.lists(st.integers(0, n_classes - 1), min_size=size, max_size=size))
    predicted = draw(st.lists(st.integers(low, n_classes - 1), min_size=size, max_size=size))
    return n_classes, np.array(true), np.array(predicted)


@settings(max_examples=200, deadline=None)
@given(answers())
def test_scores_match_sklearn(case):
    n_classes, true, predicted = case
    s = metrics.score(true, predicted, n_classes)
    every = list(range(n_classes))
    assert s.accuracy == pytest.approx(sklearn_metrics.accuracy_score(true, predicted))
    assert s.confusion.tolist() == sklearn_metrics.confusion_matrix(true, predicted, labels=every).tolist()
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        true, predicted, labels=every, zero_division=0)
    assert s.classes.precision == pytest.approx(precision)
    assert s.classes.recall == pytest.approx(recall)
    assert s.classes.f1 == pytest.approx(f1)
    assert s.classes.support.tolist() == support.tolist()
    # macro: sklearn's default label set, the classes in the truth or the predictions
    assert s.macro_f1 == pytest.approx(sklearn_metrics.f1_score(true, predicted, average="macro", zero_division=0))
    for name, ours in (("precision", s.macro["precision"]), ("recall", s.macro["recall"])):
        theirs = getattr(sklearn_metrics, f"{name}_score")(true, predicted, average="macro", zero_division=0)
        assert ours == pytest.approx(theirs)
    assert s.weighted["f1"] == pytest.approx(sklearn_metrics.f1_score(true, predicted, labels=every,
                                                                        average="weighted", zero_division=0))
    assert s.count == len(true) and s.correct == int((true == predicted).sum())


@settings(max_examples=200, deadline=None)
@given(answers(no_answer=True))
def test_no_answer_is_wrong_and_no_class(case):
    """A failed image (the demo counts it): wrong, in its true class's support, nobody's prediction;
    sklearn agrees when told the real classes present."""
    n_classes, true, predicted = case
    s = metrics.score(true, predicted, n_classes)
    present = sorted(set(true.tolist()) | set(predicted[predicted != metrics.NO_ANSWER].tolist()))
    assert s.accuracy == pytest.approx(sklearn_metrics.accuracy_score(true, predicted))
    assert s.macro_f1 == pytest.approx(sklearn_metrics.f1_score(true, predicted, labels=present, average="macro",
                                                                zero_division=0))
    precision, recall, _, support = sklearn_metrics.precision_recall_fscore_support(
        true, predicted, labels=list(range(n_classes)), zero_division=0)
    assert s.classes.precision == pytest.approx(precision) and s.classes.recall == pytest.approx(recall)
    assert s.classes.support.tolist() == support.tolist()
    answered = predicted != metrics.NO_ANSWER
    assert s.confusion.sum() == int(answered.sum())


def test_macro_counts_a_class_only_predicted():
    """The one macro-F1: a class never true but predicted counts (with F1 0), as in sklearn;
    averaging over the true classes only would give 1.0 here."""
    true, predicted = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    s = metrics.score(true, predicted, 3)
    assert s.macro_f1 == pytest.approx(sklearn_metrics.f1_score(true, predicted, average="macro"))
    assert s.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
