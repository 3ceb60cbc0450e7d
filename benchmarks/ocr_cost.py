#!/usr/bin/env python
"""Benchmark: what reading the text (``scan --read-text``, issue #18) costs per photo, against the
image model alone, on the same photos in the same process.

Two photo sets: the ``clothing-tags`` validation photos as they are (logo crops, median width about
200 px; generated photos with a rendered brand word when the dataset is absent) and phone-size
photos (benchkit's set: longest side 1600-2400 px). Each side is run once unmeasured (models
loaded, files in the page cache), then timed: the engine's scan alone, then the same scan with
:class:`tagteller.text_cues.SecondOpinion` applied to each result as ``tagteller scan`` does
(once per image, after the image model). Needs the ``ocr`` extra.

    .venv/bin/python benchmarks/ocr_cost.py [--count 60] [--phone-count 12]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

CLOTHING_TAGS = benchkit.SHARED_DATASETS / "clothing-tags"


def dataset_photos(count: int, cache: Path) -> tuple[list[Path], str]:
    """The first ``count`` clothing-tags validation photos, else generated photos with a word."""
    from tagteller import plugins
    from tagteller.datasets import stratified_split

    if CLOTHING_TAGS.is_dir():
        domain = plugins.get_domain("clothing-tags")
        data = domain.layout.load(CLOTHING_TAGS, domain.labels)
        _, val = stratified_split(list(data.samples), domain.recipe.val_fraction, domain.recipe.seed)
        return [Path(s.path) for s in val[:count]], f"clothing-tags validation photos ({min(count, len(val))})"
    from PIL import Image, ImageDraw, ImageFont

    folder = cache / "ocr-words"
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for i in range(count):
        path = folder / f"word-{i:03d}.jpg"
        if not path.is_file():
            im = Image.new("RGB", (240, 160), (30 + 7 * i % 200, 60, 90))
            ImageDraw.Draw(im).text((120, 80), ("NIKE", "PUMA", "adidas")[i % 3], fill=(250, 250, 250),
                                    font=ImageFont.load_default(size=48), anchor="mm")
            im.save(path, quality=92)
        photos.append(path)
    return photos, f"generated 240x160 photos with a brand word ({count})"


def timed(engine, model, photos, opinion=None) -> tuple[float, int]:
    """Seconds for one scan of ``photos`` (with text reading when ``opinion``), and matches."""
    started = time.perf_counter()
    matched = 0
    for result in engine.scan(model, photos, top_k=3):
        if opinion is not None and result.ok:
            opinion.apply(result, photos[result.index])
            matched += result.text_match is not None
    return time.perf_counter() - started, matched


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0], model_options=False, images_option=True)
    p.add_argument("--count", type=int, default=60, help="dataset photos")
    p.add_argument("--phone-count", type=int, default=12, help="phone-size photos")
    args = p.parse_args()
    from tagteller import plugins
    from tagteller.engine import Engine
    from tagteller.text_cues import SecondOpinion, TextReader, ocr_available

    if not ocr_available():
        raise SystemExit("error: this benchmark needs the optional 'ocr' extra: pip install 'tagteller[ocr]'")
    m = benchkit.machine()
    cache = benchkit.cache_root(args.cache)
    domain = plugins.get_domain("clothing-tags")
    engine = Engine()
    model = engine.load(domain.resolve_model())
    reader = TextReader()
    opinion = SecondOpinion({domain.name: domain.text_cues}, reader)
    small, small_desc = dataset_photos(3 if args.quick else args.count, cache)
    phone = benchkit.ensure_photos(args, 2 if args.quick else args.phone_count,
                                   (640, 800) if args.quick else benchkit.PHOTO_LONGEST_SIDE)
    rows, data = [], {}
    for name, photos, desc in (("dataset", small, small_desc), ("phone", phone, benchkit.describe_photos(phone))):
        benchkit.warm_page_cache(photos)
        timed(engine, model, photos[:2], opinion)  # load both, unmeasured
        image_s, _ = timed(engine, model, photos)
        both_s, matched = timed(engine, model, photos, opinion)
        n = len(photos)
        image_ms, both_ms = 1000 * image_s / n, 1000 * both_s / n
        rows.append([desc, n, f"{image_ms:.1f}", f"{both_ms:.1f}", f"{both_ms - image_ms:.1f}",
                     f"{both_ms / image_ms:.0f}x", matched])
        data[name] = {"photos": n, "image_ms": round(image_ms, 2), "with_text_ms": round(both_ms, 2),
                      "matched": matched}
    benchkit.record(
        args, "Text reading (OCR) cost per photo",
        ["photos", "n", "image model ms/photo", "with --read-text ms/photo", "reading adds ms", "ratio",
         "cue matches"], rows,
        notes=["one process, the shipped clothing-tags model; text read once per photo after the image model "
               "(tagteller.text_cues.SecondOpinion) with rapidocr-onnxruntime's PP-OCRv4 models",
               "the image model's figure is the engine's folder scan (decode workers in parallel); reading is "
               "one photo at a time, each using onnxruntime's own threads"],
        machine_info=m, data=data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
