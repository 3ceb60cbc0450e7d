#!/usr/bin/env python3
"""Measure text cues on a domain's data: which words its photos' OCR text holds, and what the cues
add to the shipped image model on the domain's validation split.

    .venv/bin/python scripts/text_cues_eval.py --domain clothing-tags ../shared/datasets/clothing-tags
    .venv/bin/python scripts/text_cues_eval.py --domain shoes ../shared/datasets/shoes --mine

Repeated splits: ``scripts/crossval.py --domain NAME DATA --repeats 3`` trains a model per seed
(101, 102, ...) and leaves it in ``<tmp>/tagteller-crossval-model-*/NAME.onnx``; then
``--seed 101 --model THAT.onnx`` measures it on its own validation split.

Every photo is read once with :class:`tagteller.text_cues.TextReader` (lines kept down to a score
of 0.3, with their scores) and the text is cached in a JSON file (``--cache``, default under the
temporary folder; keyed by path, size and mtime), so reruns cost no OCR.

Figures, on the split the domain's training uses (``stratified_split`` with the recipe's
``val_fraction`` and ``seed``, group-aware; the shipped model never saw these photos):

- image only: top-1 accuracy of the shipped model as ``tagteller scan`` answers (an ``unknown``
  answer counts as wrong), and with the cues: the same answers after :class:`SecondOpinion`;
- the cues' coverage (photos where a cue matched) and precision (matches naming the right label),
  per label and in all;
- ``--kfold K --repeats R``: coverage and precision of the declared cues over K group-aware folds
  of the whole dataset, R seeds, with mean and spread (OCR text only; no image model);
- ``--mine``: per label, the words (3+ letters or digits) found in the OCR text of at least
  ``--min-photos`` of its *training* photos and in none of another label's photos: the candidates
  a domain's cues are chosen from (then checked with fuzzy matching on the other labels).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "tagteller-ocr-text-cache.json"
CACHE_MIN_SCORE = 0.3


def load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_all(samples, cache_path: Path, detect_side: int) -> dict[str, dict]:
    """``{path: {"lines": [...], "scores": [...]}}`` for every sample, read once and cached."""
    from tagteller.atomic import atomic_write_text
    from tagteller.text_cues import DETECT_SIDE, TextReader

    cache = load_cache(cache_path)
    reader = TextReader(min_score=CACHE_MIN_SCORE, detect_side=detect_side)
    out, fresh, started = {}, 0, time.perf_counter()
    for n, sample in enumerate(samples):
        path = Path(sample.path)
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
        if detect_side != DETECT_SIDE:
            key += f"|detect{detect_side}"
        if key not in cache:
            reading = reader.read(path)
            cache[key] = {"lines": list(reading.lines), "scores": list(reading.scores)}
            fresh += 1
            if fresh % 50 == 0:
                atomic_write_text(cache_path, json.dumps(cache))
                print(f"  read {n + 1}/{len(samples)} ({(time.perf_counter() - started) / fresh:.3f} s/photo)",
                      file=sys.stderr, flush=True)
        out[str(sample.path)] = cache[key]
    if fresh:
        atomic_write_text(cache_path, json.dumps(cache))
        print(f"  OCR: {fresh} photos read, {(time.perf_counter() - started) / fresh:.3f} s/photo", file=sys.stderr)
    return out


def lines_of(entry: dict, min_score: float) -> list[str]:
    return [line for line, score in zip(entry["lines"], entry["scores"]) if score >= min_score]


def cue_figures(samples, texts, cues, min_score: float) -> dict:
    """Coverage and precision of ``cues`` on ``samples``, in all and per true label."""
    from tagteller.text_cues import match_cues

    per = defaultdict(lambda: {"photos": 0, "matched": 0, "right": 0})
    for s in samples:
        match = match_cues(lines_of(texts[str(s.path)], min_score), cues)
        row = per[s.label]
        row["photos"] += 1
        if match is not None:
            row["matched"] += 1
            row["right"] += match.label == s.label
    total = {k: sum(r[k] for r in per.values()) for k in ("photos", "matched", "right")}

    def fig(r):
        return {"photos": r["photos"], "matched": r["matched"], "coverage": round(r["matched"] / r["photos"], 4),
                "precision": round(r["right"] / r["matched"], 4) if r["matched"] else None}

    return {"all": fig(total), "per_label": {label: fig(r) for label, r in sorted(per.items())}}


def mine(train, every, texts, labels, min_photos: int, min_score: float) -> dict[str, list[tuple[str, int]]]:
    """Per label: words in at least ``min_photos`` of its training photos' text, in no photo of
    another label (any split), most frequent first."""
    from tagteller.text_cues import normalise_text

    def words(entry):
        found = set()
        for line in lines_of(entry, min_score):
            for token in re.split(r"[^0-9A-Za-z]+", line):
                token = normalise_text(token)
                if len(token) >= 3:
                    found.add(token)
        return found

    in_label: dict[str, Counter] = {label: Counter() for label in labels}
    for s in train:
        in_label[s.label].update(words(texts[str(s.path)]))
    joined = defaultdict(list)
    for s in every:
        joined[s.label].append(" ".join(normalise_text(line) for line in lines_of(texts[str(s.path)], min_score)))
    out = {}
    for label in labels:
        others = [t for other, ts in joined.items() if other != label for t in ts]
        out[label] = [(w, c) for w, c in in_label[label].most_common()
                      if c >= min_photos and not any(w in t for t in others)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, help="image model (default: the domain's shipped one)")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the recipe's; give the "
                        "seed a --model was trained with, e.g. by scripts/crossval.py)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--min-score", type=float, default=None, help="drop OCR lines under this score "
                        "(default: the reader's, tagteller.text_cues.MIN_LINE_SCORE)")
    parser.add_argument("--min-similarity", type=float, default=None, help="override the domain's")
    parser.add_argument("--exact", action="store_true", help="exact matches only (min_similarity 1.0)")
    parser.add_argument("--fuzzy-min-length", type=int, default=None, help="override the domain's")
    parser.add_argument("--cues", help='try other cues: JSON {"label": ["word", ...], ...} (all may override)')
    parser.add_argument("--mine", action="store_true", help="print candidate cue words per label")
    parser.add_argument("--detect-side", type=int, default=None, help="read with this TextReader detect_side")
    parser.add_argument("--min-photos", type=int, default=2)
    parser.add_argument("--kfold", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    os.environ.setdefault("TAGTELLER_HOME", tempfile.mkdtemp(prefix="tagteller-text-cues-"))
    from dataclasses import replace

    from tagteller import plugins
    from tagteller.datasets import kfold_splits, stratified_split
    from tagteller.engine import Engine
    from tagteller.text_cues import MIN_LINE_SCORE, SecondOpinion, TextCues

    domain = plugins.get_domain(args.domain)
    min_score = MIN_LINE_SCORE if args.min_score is None else args.min_score
    data = domain.layout.load(args.data, domain.labels)
    samples = list(data.samples)
    seed = domain.recipe.seed if args.seed is None else args.seed
    train, val = stratified_split(samples, domain.recipe.val_fraction, seed)
    print(f"{domain.name}: {len(samples)} photos, validation split {len(val)} (val_fraction "
          f"{domain.recipe.val_fraction}, seed {seed})", flush=True)
    from tagteller.text_cues import DETECT_SIDE

    texts = read_all(samples, args.cache, args.detect_side or DETECT_SIDE)

    figures: dict = {"domain": domain.name, "photos": len(samples), "validation": len(val), "seed": seed,
                     "min_score": min_score}
    if args.mine:
        mined = mine(train, samples, texts, domain.labels, args.min_photos, min_score)
        figures["mined"] = mined
        for label, found in mined.items():
            print(f"  {label}: {', '.join(f'{w} ({c})' for w, c in found[:15]) or '-'}")

    cues = domain.text_cues
    if args.cues:
        from tagteller.text_cues import TextCue

        cues = TextCues(tuple(TextCue(label, tuple(words)) for label, words in json.loads(args.cues).items()),
                        **({"min_similarity": cues.min_similarity} if cues is not None else {}))
    if cues is None:
        print("the domain declares no text cues: nothing more to measure")
        return 0
    if args.exact or args.min_similarity is not None:
        cues = replace(cues, min_similarity=1.0 if args.exact else args.min_similarity)
    if args.fuzzy_min_length is not None:
        cues = replace(cues, fuzzy_min_length=args.fuzzy_min_length)
    figures["cues"] = {c.label: list(c.words) for c in cues.cues}
    figures["min_similarity"] = cues.min_similarity
    figures["fuzzy_min_length"] = cues.fuzzy_min_length

    engine = Engine()
    model = engine.load(args.model or domain.resolve_model())
    results = list(engine.scan(model, [s.path for s in val], top_k=len(domain.labels)))

    class CachedReader:  # the cached lines instead of reading again
        def read(self, source):
            from tagteller.text_cues import TextReading

            return TextReading(tuple(lines_of(texts[str(source)], min_score)))

    opinion = SecondOpinion({domain.name: cues}, CachedReader())  # type: ignore[arg-type]
    image_right = with_text_right = overrides = fixed = broken = unknown = 0
    for s, r in zip(val, results):
        image_label = r.top.label if r.ok and not r.unknown and r.top else None
        unknown += r.unknown
        image_right += image_label == s.label
        opinion.apply(r, s.path)
        final = r.text_match.label if r.text_match is not None and r.text_match.overrode else image_label
        overrides += r.text_match is not None and r.text_match.overrode
        with_text_right += final == s.label
        fixed += final == s.label and image_label != s.label
        broken += final != s.label and image_label == s.label
    n = len(val)
    figures["validation_split"] = {
        "image_only_accuracy": round(image_right / n, 4), "with_text_accuracy": round(with_text_right / n, 4),
        "gain_points": round(100 * (with_text_right - image_right) / n, 2), "overrides": overrides,
        "fixed": fixed, "broken": broken, "unknown_answers": unknown,
        "cues": cue_figures(val, texts, cues, min_score)}
    print(f"validation split ({n} photos): image only {image_right / n:.4f}, with text cues "
          f"{with_text_right / n:.4f} ({100 * (with_text_right - image_right) / n:+.2f} points; {overrides} "
          f"overrides: {fixed} fixed, {broken} broken; {unknown} unknown answers)")
    vc = figures["validation_split"]["cues"]
    print(f"  cues on the validation split: coverage {vc['all']['coverage']:.4f}, precision "
          f"{vc['all']['precision']} ({vc['all']['matched']} of {vc['all']['photos']} matched)")
    for label, row in vc["per_label"].items():
        print(f"    {label}: coverage {row['coverage']:.4f} ({row['matched']}/{row['photos']}), precision {row['precision']}")

    whole = cue_figures(samples, texts, cues, min_score)
    figures["whole_dataset_cues"] = whole
    wrong = whole["all"]["matched"] - round((whole["all"]["precision"] or 0) * whole["all"]["matched"])
    print(f"  cues on every photo of the dataset: {whole['all']['matched']} of {whole['all']['photos']} matched "
          f"(coverage {whole['all']['coverage']:.4f}), {wrong} naming a wrong label: an override "
          f"{'never turns' if wrong == 0 else 'can turn'} a right image answer wrong on these data")

    coverages, precisions = [], []
    for repeat in range(args.repeats):
        for _tr, fold in kfold_splits(samples, args.kfold, seed=repeat):
            f = cue_figures(fold, texts, cues, min_score)["all"]
            coverages.append(f["coverage"])
            if f["precision"] is not None:
                precisions.append(f["precision"])
    figures["kfold"] = {"k": args.kfold, "repeats": args.repeats,
                        "coverage_mean": round(float(np.mean(coverages)), 4),
                        "coverage_std": round(float(np.std(coverages, ddof=1)), 4),
                        "precision_mean": round(float(np.mean(precisions)), 4) if precisions else None,
                        "precision_min": round(float(np.min(precisions)), 4) if precisions else None}
    k = figures["kfold"]
    print(f"  cues over {args.kfold} folds x {args.repeats} repeats (group-aware, whole dataset): coverage "
          f"{k['coverage_mean']:.4f} +- {k['coverage_std']:.4f}, precision mean {k['precision_mean']}, "
          f"min {k['precision_min']}")
    if args.out:
        from tagteller.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
