"""Whether an evaluation scores a model on the images it was trained on.

A model records the fingerprint of its training data (``training.data_fingerprint``:
:meth:`tagteller.datasets.Dataset.fingerprint`, a sha256 over every sample's key, label and file
content) and the sha256 of its validation keys (``training.val_keys_sha256``). When the evaluated
data has the same fingerprint, it is the training data set itself: with ``--split all`` the
training side of its split (recomputed with the domain's recipe) is in the scores. With
``--split val``, the validation keys are compared with the model's. Data with another
fingerprint (another data set, or the same one changed, or a model trained with feedback photos)
cannot be compared file by file from the metadata alone, and is not warned about.
"""

from __future__ import annotations

from tagteller.errors import DatasetError
from tagteller.evaluate.evaluate import Evaluation, keys_sha256, select_samples


def training_overlap_warning(evaluation: Evaluation) -> str | None:
    """One line saying how the evaluated images overlap the model's training images, or None."""
    training = evaluation.model.info.training or {}
    trained_on = training.get("data_fingerprint")
    if not trained_on or evaluation.data_fingerprint != trained_on:
        return None
    root = evaluation.dataset.root
    if evaluation.split == "val":
        trained_val = training.get("val_keys_sha256")
        selected = [s.key for s in evaluation.evaluated] + [s.key for s, _ in evaluation.failures]
        if trained_val and keys_sha256(selected) != trained_val:
            return (f"{root} is the data this model was trained on, but its validation split differs from the "
                    "model's (the domain's recipe seed or val_fraction changed): training images may be in the scores")
        return None
    try:
        validation = len(select_samples(evaluation.dataset, "val", evaluation.domain.recipe))
    except DatasetError:  # too few images per label for a validation side: all were trained on
        validation = 0
    trained = evaluation.selected_count - validation
    return (f"{root} is the data this model was trained on (same data fingerprint): {trained} of the "
            f"{evaluation.selected_count} images were training images, so these scores are optimistic; "
            "--split val scores its held-out validation images only")
