"""The demo: the official Fashion-MNIST test split, fetched, verified, cached, and scored.

Owns what ``tagteller demo`` does below the command line:

- where the test split comes from (the upstream download location, then GitHub as a fallback),
  the published md5 of each file, and the cache in ``paths.cache_dir()/fashion-mnist/``: pooch
  downloads a file to a temp file beside its final name, checks its md5, then moves it into place;
  a cached file whose md5 is wrong is fetched again;
- an offline copy (``--from DIR``): the same two idx files, checked against the published md5s
  when they are the official ones, accepted with a note when they are not;
- the packaged sample (:data:`PACKAGED_SAMPLE`): 1,000 images, 100 a class, of the ``apparel``
  model's own validation split of the training set (never trained on), in the same idx format,
  which the demo scans when the official split cannot be downloaded, saying so;
- scanning the images with a model through the shared engine, exactly as ``tagteller scan`` does,
  and scoring the answers (:func:`tagteller.evaluate.measure.measure`, the one measuring
  function): accuracy, per-class recall and precision, macro-F1, images per second.

pooch (and requests, which it uses) is imported only when something has to be downloaded.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagteller.datasets import IdxLayout
from tagteller.errors import DatasetError, TagtellerError
from tagteller.evaluate import metrics

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rich.progress import Progress

    from tagteller.engine import Engine, LoadedModel, ScanResult


@dataclass(frozen=True)
class OfficialFile:
    """One file of the official split: its name and the md5 upstream publishes for it."""

    name: str
    md5: str


#: The Fashion-MNIST test split as upstream publishes it (zalandoresearch/fashion-mnist README).
OFFICIAL_FILES: tuple[OfficialFile, ...] = (
    OfficialFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    OfficialFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
)
#: The idx layout of those files (``t10k-images-idx3-ubyte.gz`` + ``t10k-labels-idx1-ubyte.gz``).
TEST_SPLIT_LAYOUT = IdxLayout(prefix="t10k")
#: Where they are downloaded from, in order: the official download location, then the repository.
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
PROJECT_PAGE = "https://github.com/zalandoresearch/fashion-mnist"
#: 1,000 Fashion-MNIST images (MIT), 100 per class, drawn (seed 0) from the ``apparel`` model's
#: validation split of the *training* set: images it never trained on, for a demo without network.
PACKAGED_SAMPLE = Path(__file__).resolve().parent / "samples" / "fashion-mnist"
SAMPLE_DESCRIPTION = ("the 1,000-image sample that ships with tagteller (Fashion-MNIST training-set images "
                      "the apparel model held out for validation, not the official test split)")
#: Seconds to wait for a connection or for the next bytes before giving up on a mirror.
DOWNLOAD_TIMEOUT_S = 30.0
CACHE_SUBDIR = "fashion-mnist"

Note = Callable[[str], None]


class DownloadError(TagtellerError):
    """The test split could not be downloaded (offline, every mirror failed, or wrong bytes)."""


def file_names() -> str:
    """``"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"``, for messages."""
    return " and ".join(f.name for f in OFFICIAL_FILES)


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_folder() -> Path:
    """Where downloaded files are kept: ``<cache>/fashion-mnist/``."""
    from tagteller.paths import cache_dir

    return cache_dir() / CACHE_SUBDIR


# -- downloading --------------------------------------------------------------------------------
class _RichBar:
    """A pooch progress bar (``total``, ``update``, ``reset``, ``close``) drawn as a rich task."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    @property
    def total(self) -> float | None:
        return self._progress.tasks[self._task].total if self._task in self._progress.task_ids else None

    @total.setter
    def total(self, value: int) -> None:
        self._progress.update(self._task, total=value or None)

    def update(self, count: int) -> None:
        self._progress.update(self._task, advance=count)

    def reset(self) -> None:
        self._progress.reset(self._task)

    def close(self) -> None:
        self._progress.remove_task(self._task)


def make_downloader(name: str, progress: Progress | None = None) -> Any:
    """The pooch downloader for one file (the only object here that touches the network): HTTP(S)
    with a timeout, tagteller's User-Agent and, on a terminal, a rich progress bar."""
    import pooch

    from tagteller import __version__

    bar = _RichBar(progress, f"downloading {name}") if progress is not None else False
    return pooch.HTTPDownloader(progressbar=bar, timeout=DOWNLOAD_TIMEOUT_S,
                                headers={"User-Agent": f"tagteller/{__version__}"})


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a failed download."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason or ''}".strip()
    text = " ".join(str(exc).split())
    if "timed out" in text.lower() or isinstance(exc, TimeoutError):
        return "timed out"
    for marker in ("Failed to establish a new connection: ", "Connection refused", "Name or service not known",
                   "Temporary failure in name resolution"):
        if marker in text:
            return text.split(marker, 1)[-1].rstrip(")'\"") if marker.endswith(": ") else marker.lower()
    return f"{exc.__class__.__name__}: {text[:200]}" if text else exc.__class__.__name__


def fetch_file(official: OfficialFile, folder: Path, *, progress: Progress | None = None) -> Path:
    """Download ``official`` into ``folder`` from the first mirror that serves the right bytes.

    pooch downloads to a temp file beside the destination, checks the md5 and only then moves it
    into place, so a failed attempt leaves nothing behind. Raises :class:`DownloadError` naming
    each mirror's reason when none delivered.
    """
    import logging

    import pooch
    import requests

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch announces each download on stderr; the progress bar does
    reasons: list[str] = []
    try:
        for mirror in MIRRORS:
            url = mirror + official.name
            host = urllib.parse.urlsplit(url).netloc
            try:
                return Path(pooch.retrieve(url, known_hash=f"md5:{official.md5}", fname=official.name,
                                           path=folder, downloader=make_downloader(official.name, progress),
                                           progressbar=False))
            except requests.RequestException as exc:  # before OSError: requests' errors are OSErrors
                reasons.append(f"{host}: {_reason(exc)}")
            except ValueError as exc:  # pooch: the md5 of what arrived is not the published one
                if "hash" not in str(exc).lower():
                    raise
                reasons.append(f"{host}: sent a file whose md5 is not the published {official.md5}")
            except OSError as exc:  # the cache folder is unusable: no other mirror helps
                raise DownloadError(f"cannot write {folder / official.name}: {exc.strerror or exc}") from None
    finally:
        logger.setLevel(level)
    raise DownloadError("; ".join(reasons) if reasons else f"no mirror for {official.name}")


def cached_test_split(folder: Path | None = None, *, progress: Progress | None = None,
                      note: Note | None = None) -> list[str]:
    """Make ``folder`` (default: :func:`cache_folder`) hold the verified official test split,
    downloading what is missing or corrupt; return the names of the files that were downloaded.

    Raises :class:`DownloadError` with a one-line message that says how to use ``--from`` when a
    file cannot be obtained.
    """
    folder = folder or cache_folder()
    fetched: list[str] = []
    for official in OFFICIAL_FILES:
        path = folder / official.name
        if path.is_file():
            try:
                got = file_md5(path)
            except OSError as exc:
                got = f"unreadable ({exc.strerror or exc})"
            if got == official.md5:
                continue
            if note is not None:
                note(f"cached {path} is corrupt (md5 {got}, expected {official.md5}); downloading it again")
        try:
            fetch_file(official, folder, progress=progress)
            fetched.append(official.name)
        except DownloadError as exc:
            raise DownloadError(
                f"could not download the Fashion-MNIST test split ({exc}); get {file_names()} from "
                f"{PROJECT_PAGE} and run `tagteller demo --from DIR` with DIR holding both files"
            ) from None
    return fetched


def check_offline_copy(folder: Path, note: Note | None = None) -> bool:
    """Check ``--from DIR``: both files must be there. Returns True when both are the official
    files (md5 verified); other idx files are accepted with one note saying so."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: --from folder does not exist (it must hold {file_names()})")
    paths = [folder / expected.name for expected in OFFICIAL_FILES]
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: missing; --from DIR must hold {file_names()}")
    differing = []
    for expected, path in zip(OFFICIAL_FILES, paths):
        try:
            if file_md5(path) != expected.md5:
                differing.append(expected.name)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if differing and note is not None:
        note(f"{folder}: not the official Fashion-MNIST test split (the md5 of {' and '.join(differing)} "
             "differs from the published one); scanning it anyway, but the accuracy is not comparable "
             "to published results")
    return not differing


# -- scoring ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassScore:
    """How one class fared: images of it, how many were found, how many guesses named it, and
    recall and precision (None where nothing was there to divide by)."""

    label: str
    count: int
    correct: int
    predicted: int
    recall: float | None
    precision: float | None


@dataclass
class DemoResult:
    """The scores of one demo run and what produced them.

    ``scores`` covers every image, one that failed to scan counted as a wrong answer, over the
    model's labels (``scored_labels``); ``classes`` reports the split's own ``labels``, in idx
    label-number order.
    """

    labels: tuple[str, ...]
    scored_labels: tuple[str, ...]
    scores: metrics.Scores
    failures: list[tuple[str, str]]
    seconds: float
    batch_size: int
    model_path: Path
    model_version: str
    model_source: str
    data_folder: Path
    data_origin: str  # "cache", "download", "from" or "sample"
    official: bool
    classes: list[ClassScore] = field(init=False)

    def __post_init__(self) -> None:
        c = self.scores.classes
        self.classes = []
        for label in self.labels:
            i = self.scored_labels.index(label)
            count, predicted = int(c.support[i]), int(c.predicted[i])
            self.classes.append(ClassScore(label, count, int(self.scores.confusion[i, i]), predicted,
                                           float(c.recall[i]) if count else None,
                                           float(c.precision[i]) if predicted else None))

    @property
    def total(self) -> int:
        return self.scores.count

    @property
    def correct(self) -> int:
        return self.scores.correct

    @property
    def accuracy(self) -> float:
        """Right answers over all images (an image that failed to scan counts as wrong)."""
        return self.scores.accuracy

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes in the truth or the answers (:mod:`tagteller.evaluate.metrics`)."""
        return self.scores.macro_f1

    @property
    def images_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        def pct(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "dataset": {
                "name": "Fashion-MNIST test split",
                "folder": str(self.data_folder),
                "origin": self.data_origin,
                "official": self.official,
                "images": self.total,
            },
            "model": {"path": str(self.model_path), "version": self.model_version, "source": self.model_source},
            "accuracy": pct(self.accuracy),
            "correct": self.correct,
            "total": self.total,
            "macro_f1": pct(self.macro_f1),
            "classes": [
                {"label": c.label, "count": c.count, "correct": c.correct, "predicted": c.predicted,
                 "recall": pct(c.recall), "precision": pct(c.precision)}
                for c in self.classes
            ],
            "failed": [{"image": name, "error": reason} for name, reason in self.failures],
            "seconds": round(self.seconds, 4),
            "images_per_second": round(self.images_per_second, 2),
            "batch_size": self.batch_size,
        }


def load_test_split(folder: Path, labels: Sequence[str], limit: int | None = None) -> tuple[list[np.ndarray], list[int]]:
    """The images (28x28 uint8 arrays) and label numbers of the idx files in ``folder``."""
    dataset = IdxLayout(class_names=tuple(labels), prefix=TEST_SPLIT_LAYOUT.prefix).load(folder, labels)
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    index = dataset.label_index()
    return [s.array for s in samples], [index[s.label] for s in samples]  # type: ignore[misc]


def score_model(engine: Engine, model: LoadedModel, folder: Path, labels: Sequence[str], *,
                limit: int | None = None, batch_size: int = 64,
                on_start: Callable[[int], None] | None = None,
                on_result: Callable[[ScanResult], None] | None = None, **provenance: Any) -> DemoResult:
    """Read the split in ``folder``, scan it with ``model``, and score the answers.

    ``labels`` are the class names in idx label-number order; the model's labels are matched to
    them by name, so a model whose output order differs is still scored right. ``on_start(n)`` is
    called once the ``n`` images are read, ``on_result`` after each one is scanned. The clock covers
    reading the files, preprocessing and inference: wall time, end to end.
    """
    from tagteller.evaluate.measure import measure

    missing = sorted(set(labels) - set(model.info.labels))
    if missing:
        raise TagtellerError(f"{model.path}: the model does not know the classes {', '.join(missing)}")
    started = time.perf_counter()
    images, truth = load_test_split(folder, labels, limit)
    if on_start is not None:
        on_start(len(images))
    measured = measure(engine, model, images, [labels[t] for t in truth],
                       names=(f"t10k:{i}" for i in range(len(images))), batch_size=batch_size, on_result=on_result)
    failures = [(r.source, r.error or "failed") for r in measured.results if not measured.answered[r.index]]
    seconds = time.perf_counter() - started
    return DemoResult(labels=tuple(labels), scored_labels=measured.labels,
                      scores=measured.scores(failures_count_as_wrong=True), failures=failures,
                      seconds=seconds, batch_size=batch_size, **provenance)


def format_report(result: DemoResult) -> Iterator[str]:
    """The human-readable report, line by line."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f}%"

    if result.data_origin == "sample":
        yield f"data:     {SAMPLE_DESCRIPTION}, {result.total} images: {result.data_folder}"
    else:
        origin = {"cache": "cached", "download": "downloaded", "from": "offline copy"}.get(result.data_origin,
                                                                                         result.data_origin)
        check = "official, md5 verified" if result.official else "not the official files"
        yield f"data:     Fashion-MNIST test split, {result.total} images ({origin}, {check}): {result.data_folder}"
    yield f"model:    {result.model_path} (version {result.model_version}, {result.model_source})"
    yield f"accuracy: {pct(result.accuracy)} ({result.correct} of {result.total})"
    yield f"macro-F1: {result.macro_f1:.4f}"
    width = max(len("class"), *(len(c.label) for c in result.classes))
    yield f"  {'class':<{width}}  {'recall':>8}  {'precision':>9}  {'count':>6}"
    for c in result.classes:
        yield f"  {c.label:<{width}}  {pct(c.recall):>8}  {pct(c.precision):>9}  {c.count:>6}"
    if result.failures:
        yield f"failed:   {len(result.failures)} image(s) could not be scanned"
    yield (f"speed:    {result.images_per_second:.1f} images/s ({result.total} images in {result.seconds:.2f} s "
           f"wall, reading + preprocessing + inference, batch {result.batch_size})")
