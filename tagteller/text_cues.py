"""Text cues: an optional OCR second opinion for domains whose labels are written on the thing.

A domain may declare :class:`TextCues`: for some of its labels, the words that name them (a brand
name on a tag) and whether a match may override the image model's answer. With the ``ocr`` extra
installed (``pip install 'tagteller[ocr]'``: rapidocr-onnxruntime, whose PP-OCRv4 detection and
recognition ONNX models ship inside its wheel and run on onnxruntime) a scan with ``--read-text``
reads each photo's text once, after the image model, and only for results whose domain declares
cues (:class:`SecondOpinion`):

- the text read goes into the result (``text``), the cue it matched into ``text_match``;
- where the cue may override and names another label than the image model's, it becomes the
  answer (``text_match.overrode``); the image model's own probabilities stay in ``top``.

Matching (:func:`match_cues`) works on normalised text (:func:`normalise_text`: letters and digits
only, accents folded, lower case) because OCR often drops or adds spaces (``NIKESPORTSWEAR``): a
cue word matches where it appears in a line, or where a stretch of the line as long as the word
(one letter more or less; a shorter line as a whole) is at least ``min_similarity`` alike by
:class:`difflib.SequenceMatcher` (``ADLDAS`` for ``adidas``, ``CONVER`` for ``converse``). Words
under five letters match exactly only: one letter off ``nike`` is ``bike``. When cues of two
labels match equally well, nothing matches.

The OCR package is imported only when text is read: the default scan path never loads it.
How often the cues of the built-in domains fire and how often they are right on their validation
photos is measured by ``scripts/text_cues_eval.py``; the cost by ``benchmarks/ocr_cost.py``.
"""

from __future__ import annotations

import difflib
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tagteller.errors import ImageError, TagtellerError

#: The extra that brings the OCR package, and the package it brings.
OCR_EXTRA = "ocr"
OCR_PACKAGE = "rapidocr_onnxruntime"
INSTALL_HINT = f"pip install 'tagteller[{OCR_EXTRA}]'"
#: Photos are read with their longer side at most this (the OCR package's own limit).
MAX_SIDE = 2000
#: Text is looked for with the photo's shorter side scaled to this (the OCR package's default:
#: small crops are scaled up to it, which is most of the cost on them).
DETECT_SIDE = 736
#: Lines the recogniser is less sure of than this are dropped (the OCR package's default).
MIN_LINE_SCORE = 0.5
#: How alike a stretch of text must be to a cue word to match it (difflib ratio).
DEFAULT_MIN_SIMILARITY = 0.75
#: Shortest cue word after normalisation: shorter ones match by chance.
MIN_WORD_LENGTH = 3
#: Shorter cue words match exactly only: one letter off a 4-letter word is another word too
#: ("bike", "like" for nike; "pump", "human" for puma).
DEFAULT_FUZZY_MIN_LENGTH = 5


class OcrUnavailable(TagtellerError):
    """Text reading was asked for but the ``ocr`` extra is not installed."""


def normalise_text(text: str) -> str:
    """``text`` as cue matching sees it: accents folded, lower case, letters and digits only
    (``"Nike Sportswear®"`` -> ``"nikesportswear"``)."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded.casefold() if c.isascii() and c.isalnum())


@dataclass(frozen=True)
class TextCue:
    """The words that name one label (``words``, matched after :func:`normalise_text`), and
    whether a match may replace the image model's answer (``overrides``; False: it is only
    recorded)."""

    label: str
    words: tuple[str, ...]
    overrides: bool = True

    def __post_init__(self) -> None:
        words = tuple(self.words) if not isinstance(self.words, str) else (self.words,)
        if not words:
            raise ValueError(f"text cue for {self.label!r}: give at least one word")
        for word in words:
            if len(normalise_text(word)) < MIN_WORD_LENGTH:
                raise ValueError(f"text cue for {self.label!r}: {word!r} has under {MIN_WORD_LENGTH} letters "
                                 "or digits; short words match by chance")
        object.__setattr__(self, "words", words)


@dataclass(frozen=True)
class TextCues:
    """A domain's text cues (see the module docstring).

    - ``cues``: one :class:`TextCue` per label that has words; labels without one are never
      named by text.
    - ``min_similarity``: how alike (difflib ratio, 0-1) a stretch of the text must be to a cue
      word; 1.0 means exact matches only.
    - ``fuzzy_min_length``: cue words shorter than this (after normalisation) match exactly only.
    - ``read_by_default``: scans with this domain read text without ``--read-text`` when the
      ``ocr`` extra is installed (``--no-read-text`` turns it off). Off for the built-in domains:
      reading costs about 100 times the image model.
    """

    cues: tuple[TextCue, ...]
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    fuzzy_min_length: int = DEFAULT_FUZZY_MIN_LENGTH
    read_by_default: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cues", tuple(self.cues))
        if not self.cues:
            raise ValueError("text cues: give at least one TextCue")
        labels = [cue.label for cue in self.cues]
        if len(set(labels)) != len(labels):
            raise ValueError("text cues: one TextCue per label")
        if not 0.5 <= self.min_similarity <= 1.0:
            raise ValueError("text cues: min_similarity must be within [0.5, 1]")

    def check_labels(self, labels: Iterable[str], where: str) -> None:
        """Every cue must name one of ``labels`` (the domain's)."""
        unknown = sorted({cue.label for cue in self.cues} - set(labels))
        if unknown:
            raise ValueError(f"{where}: text cues for labels the domain does not have: {', '.join(unknown)}")


@dataclass(frozen=True)
class TextMatch:
    """A cue found in a photo's text: the ``label`` it names, the cue ``word``, what was
    ``read`` (normalised), how alike they are (``similarity``, 1.0 for an exact match), and
    whether it replaced the image model's answer (``overrode``)."""

    label: str
    word: str
    read: str
    similarity: float
    overrode: bool = False

    def as_record(self) -> dict[str, Any]:
        return {"label": self.label, "word": self.word, "read": self.read,
                "similarity": round(self.similarity, 4), "overrode": self.overrode}


def _best_in_line(word: str, line: str, cues: TextCues) -> tuple[float, str] | None:
    """The stretch of ``line`` most like ``word`` (both normalised) with its similarity, if it
    reaches ``cues.min_similarity`` (exactly ``word`` when it is shorter than
    ``cues.fuzzy_min_length``)."""
    if word in line:
        return 1.0, word
    min_similarity = cues.min_similarity
    if min_similarity >= 1.0 or len(word) < cues.fuzzy_min_length:
        return None
    best: tuple[float, str] | None = None
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(word)
    # Stretches as long as the word, one letter more or less; a shorter line as a whole
    # ("CONVER" for converse: the rest of the word was out of the picture).
    sizes = {size for size in (len(word) - 1, len(word), len(word) + 1) if size <= len(line)}
    sizes = sizes or {len(line)}
    for size in sorted(sizes):
        if size < MIN_WORD_LENGTH:
            continue
        for start in range(len(line) - size + 1):
            piece = line[start:start + size]
            matcher.set_seq1(piece)
            if matcher.real_quick_ratio() < min_similarity or matcher.quick_ratio() < min_similarity:
                continue
            ratio = matcher.ratio()
            if ratio >= min_similarity and (best is None or ratio > best[0]):
                best = (ratio, piece)
    return best


def match_cues(lines: Iterable[str], cues: TextCues) -> TextMatch | None:
    """The cue that ``lines`` (the text read from one photo) match best, or None.

    Each line is matched on its own, after :func:`normalise_text`. Per label the best
    similarity over its words counts (a longer word wins a tie); when two labels tie for the
    best, the text is ambiguous and nothing matches.
    """
    normalised = [n for n in (normalise_text(line) for line in lines) if n]
    per_label: list[tuple[float, int, TextMatch]] = []
    for cue in cues.cues:
        best: tuple[float, int, TextMatch] | None = None
        for word in cue.words:
            target = normalise_text(word)
            for line in normalised:
                found = _best_in_line(target, line, cues)
                if found is None:
                    continue
                key = (found[0], len(target))
                if best is None or key > best[:2]:
                    best = (found[0], len(target), TextMatch(cue.label, word, found[1], found[0]))
        if best is not None:
            per_label.append(best)
    if not per_label:
        return None
    per_label.sort(key=lambda item: item[:2], reverse=True)
    if len(per_label) > 1 and per_label[0][0] == per_label[1][0]:
        return None
    return per_label[0][2]


@dataclass(frozen=True)
class TextReading:
    """The text lines read from one photo, top to bottom, with the recogniser's score of each."""

    lines: tuple[str, ...]
    scores: tuple[float, ...] = field(default=())

    @property
    def text(self) -> str:
        """The lines as one line of text (``"NIKE SPORTSWEAR"``)."""
        return " ".join(self.lines)


def ocr_available() -> bool:
    """Whether the ``ocr`` extra's package can be imported (it is not imported here)."""
    import importlib.util

    try:
        return importlib.util.find_spec(OCR_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def require_ocr(what: str = "reading text") -> None:
    """Raise :class:`OcrUnavailable` (one line naming the extra) unless it is installed."""
    if not ocr_available():
        raise OcrUnavailable(f"{what} needs the optional '{OCR_EXTRA}' extra: {INSTALL_HINT}")


class TextReader:
    """Reads the text in photos with rapidocr-onnxruntime, loaded on the first :meth:`read`.

    One reader holds the OCR models (about 15 MB, loaded in a fraction of a second); reads are
    serialised by a lock, as the OCR pipeline keeps state between its steps. ``min_score``: lines
    the recogniser is less sure of are dropped; photos are read with their longer side at most
    ``max_side`` and text is looked for at ``detect_side`` (see :data:`DETECT_SIDE`).
    """

    def __init__(self, min_score: float = MIN_LINE_SCORE, max_side: int = MAX_SIDE,
                 detect_side: int = DETECT_SIDE) -> None:
        self.min_score = min_score
        self.max_side = max_side
        self.detect_side = detect_side
        self._ocr: Any = None
        self._lock = threading.Lock()

    def _engine(self) -> Any:
        if self._ocr is None:
            require_ocr()
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:  # installed but broken (e.g. its OpenCV fails to load)
                raise OcrUnavailable(f"the '{OCR_EXTRA}' extra is installed but cannot be loaded "
                                     f"({exc}); reinstall it: {INSTALL_HINT}") from None
            self._ocr = RapidOCR(det_limit_side_len=self.detect_side)
        return self._ocr

    def read(self, source: Any) -> TextReading:
        """The text in ``source`` (a path, bytes, array or PIL image). A photo that cannot be
        decoded raises :class:`~tagteller.errors.ImageError` with the reason."""
        from tagteller.imaging import decode_rgb

        rgb = decode_rgb(source, self.max_side)
        with self._lock:
            engine = self._engine()
            found, _elapsed = engine(np.ascontiguousarray(rgb[:, :, ::-1]), text_score=self.min_score)
        lines, scores = [], []
        for _box, text, score in found or ():
            text = " ".join(str(text).split())
            if text and float(score) >= self.min_score:
                lines.append(text)
                scores.append(round(float(score), 4))
        return TextReading(tuple(lines), tuple(scores))


class SecondOpinion:
    """Applies text cues to scan results: reads the photo of each result whose domain declares
    cues (``cues_by_domain``: domain name -> :class:`TextCues`) and records or overrides.

    Only answers are read (``ok`` and ``unknown`` results, never errors); an ``unknown`` answer
    keeps its status (the model says the photo is unlike its domain), the text is only recorded.
    A photo the reader cannot decode keeps its image answer (:meth:`apply` says why).
    """

    def __init__(self, cues_by_domain: Mapping[str, TextCues], reader: TextReader | None = None) -> None:
        self.cues_by_domain = dict(cues_by_domain)
        self.reader = reader or TextReader()

    def apply(self, result: Any, source: Any) -> str | None:
        """Read ``source`` for ``result`` (a :class:`~tagteller.engine.ScanResult`) and update its
        ``text`` and ``text_match`` (and answer) in place. Returns None, or why the text could not
        be read (the result keeps its image answer). The reading's milliseconds go into the
        result's ``timing_ms`` (``text_reading``), read or not."""
        from tagteller.engine import TEXT_READING

        cues = self.cues_by_domain.get(result.domain)
        if cues is None or result.error is not None:
            return None
        started = time.perf_counter()
        try:
            reading = self.reader.read(source)
        except ImageError as exc:
            return f"text not read: {exc}"
        finally:
            result.timing_ms[TEXT_READING] = (time.perf_counter() - started) * 1000
        result.text = reading.text
        match = match_cues(reading.lines, cues)
        if match is not None:
            cue = next(c for c in cues.cues if c.label == match.label)
            image_label = result.top.label if result.top else None
            overrode = cue.overrides and not result.unknown and match.label != image_label
            match = TextMatch(match.label, match.word, match.read, match.similarity, overrode)
        result.text_match = match
        return None
