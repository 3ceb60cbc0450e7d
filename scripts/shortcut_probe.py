#!/usr/bin/env python3
"""What does a model lean on? Its validation answers when a cue is taken away.

    .venv/bin/python scripts/shortcut_probe.py --domain trousers ../shared/datasets/trousers

Scans the domain's validation split (its recipe's seed) with the installed or shipped model as
it is, then again with one cue removed at a time: colour (the photo in greys), the top or the
bottom of the photo painted over with its own border colour (for trousers: the top worn with
them, and the shoes), and the mirror image. A model that leans on a cue loses recall when it goes;
each line gives top-1, balanced accuracy and the per-class recall. Then the validation photos of
each class whose name contains ``--colour-check`` (default ``jeans``) are split by their
garment's colour (the middle of the photo: blue where the blue channel leads red by
``--blue-margin``), and the recall of each part is given: is a grey or black pair still called
what it is? Uses the engine only (no tensorflow); prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, help="default: the domain's installed or shipped model")
    parser.add_argument("--cover", type=float, default=0.25, help="share of the height painted over (default 0.25)")
    parser.add_argument("--colour-check", default="jeans")
    parser.add_argument("--blue-margin", type=float, default=12.0)
    args = parser.parse_args()

    from tagteller import plugins
    from tagteller.datasets import stratified_split
    from tagteller.engine import Engine
    from tagteller.imaging import open_image
    from tagteller.evaluate.metrics import class_scores, confusion_matrix

    domain = plugins.get_domain(args.domain)
    data = domain.layout.load(args.data, domain.labels)
    _, val = stratified_split(list(data.samples), domain.recipe.val_fraction, domain.recipe.seed)
    engine = Engine()
    model = engine.load(args.model or domain.resolve_model())
    labels = list(model.info.labels)
    truth = np.array([labels.index(s.label) for s in val])
    photos = [open_image(s.path).convert("RGB") for s in val]

    def cover(im: Image.Image, top: bool) -> Image.Image:
        arr = np.asarray(im).copy()
        rows = max(1, round(arr.shape[0] * args.cover))
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).mean(axis=0)
        if top:
            arr[:rows] = border
        else:
            arr[-rows:] = border
        return Image.fromarray(arr)

    views = {
        "as is": lambda im: im,
        "greys (no colour)": lambda im: ImageOps.grayscale(im).convert("RGB"),
        f"top {args.cover:.0%} covered": lambda im: cover(im, True),
        f"bottom {args.cover:.0%} covered": lambda im: cover(im, False),
        "mirror image": ImageOps.mirror,
    }
    answers = {}
    for name, view in views.items():
        results = list(engine.scan(model, [np.asarray(view(im)) for im in photos], top_k=1, accept_unknown=True))
        predicted = np.array([labels.index(r.top.label) for r in results])
        answers[name] = predicted
        scores = class_scores(confusion_matrix(truth, predicted, len(labels)))
        recall = {label: round(float(r), 4) for label, r in zip(labels, scores.recall)}
        print(json.dumps({"view": name, "top1": round(float((predicted == truth).mean()), 4),
                          "balanced": round(float(np.mean(list(recall.values()))), 4), "recall": recall}), flush=True)

    for i, label in enumerate(labels):
        if args.colour_check not in label:
            continue
        mask = truth == i
        centre = [np.asarray(photos[j])[photos[j].height // 4: 3 * photos[j].height // 4,
                                        photos[j].width // 4: 3 * photos[j].width // 4].reshape(-1, 3).mean(0)
                  for j in np.flatnonzero(mask)]
        blue = np.array([c[2] - c[0] > args.blue_margin for c in centre])
        right = answers["as is"][mask] == i
        right_grey = answers["greys (no colour)"][mask] == i
        print(json.dumps({"class": label, "blue": int(blue.sum()), "not blue": int((~blue).sum()),
                          "recall blue": round(float(right[blue].mean()), 4) if blue.any() else None,
                          "recall not blue": round(float(right[~blue].mean()), 4) if (~blue).any() else None,
                          "recall blue, shown in greys": round(float(right_grey[blue].mean()), 4) if blue.any() else None}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
