"""Taught labels: new labels added from a handful of photos, scored on the model's embedding.

``tagteller teach --domain D LABEL PHOTO...`` stores the photos and their embeddings (the model's
``embedding`` output: L2-normalised penultimate features, see :mod:`tagteller.openset_graph`);
the engine then scores each taught label beside the model's own classes. No retraining, no
TensorFlow: numpy, Pillow and onnxruntime only.

**Scoring** (:class:`TaughtScorer`, the one place it happens; the engine calls it per batch).
A model made by this tagteller stores, in its metadata key ``class_references``
(:func:`class_references`, written at export and by ``scripts/add_class_references.py``), the
prototype of each of its classes (the normalised mean embedding of its validation images,
float16) and how its own classes behave in that space, measured on those validation embeddings:

- ``temperature``: the softmax temperature of the nearest-prototype classifier (cosine
  similarity / T) fitted by negative log-likelihood on the validation labels (each image against
  its own class's prototype without itself: leave-one-out), at least :data:`MIN_TEMPERATURE`;
- ``shot_deficit``: how much lower an image's similarity is to a prototype of only
  :data:`MIN_PHOTOS` photos of its class than to the prototype of all of them (averaged over
  random draws); a taught label's prototype is such a small one, so its similarities are raised
  by this deficit (scaled by ``MIN_PHOTOS / photos`` for labels taught from more photos);
- ``accept_similarity``: the similarity to its class's prototype that 95% of the validation
  images reach (leave-one-out): the taught-label counterpart of the open-set threshold.

For an image with embedding ``e``: ``q = softmax([e.P, e.Q + deficit] / T)`` over the model's
prototypes ``P`` and the taught prototypes ``Q``; the taught labels get ``q``'s share and the
model's own probabilities are scaled by what is left, so the model's calibrated answers among its
own classes are unchanged. When a taught label comes first and its (corrected) similarity reaches
its acceptance similarity, the image is not ``unknown`` even where the open-set gate (which never
saw the taught label) would reject it: its score is put under the threshold by the margin
``(similarity - accept) / (1 - accept)`` (see :func:`tagteller.engine.acceptance_margin`). A taught
label's acceptance similarity is the model's ``accept_similarity``, or lower when the label's own
photos are more spread out: the lowest similarity of one of them to the prototype of the others.

**Storage** (in the user data folder, every write atomic: :mod:`tagteller.atomic`)::

    <data>/taught/<domain>/labels.json               label -> photo files, when taught
    <data>/taught/<domain>/photos/<sha256>.<ext>     the photos' original bytes (kept)
    <data>/taught/<domain>/embeddings/<model>.npz    their embeddings by one model file

An embeddings file records the model's version and the SHA-256 of the model file it came from.
When the domain's model changes (an upgrade, ``tagteller train``), the stored photos are
embedded again by the new model the first time it needs them (a line on stderr says so); a photo
that is gone or no longer decodes is named, and a label left with fewer than :data:`MIN_PHOTOS`
photos is named as one to teach again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from tagteller.errors import ImageError, InvalidNameError, ModelError, TagtellerError
from tagteller.names import validate_domain_name, validate_label
from tagteller.paths import data_dir, domain_folders

log = logging.getLogger("tagteller.taught")

#: A label is taught from at least this many photos.
MIN_PHOTOS = 5
#: The metadata key holding :func:`class_references`.
REFERENCES_KEY = "class_references"
REFERENCES_FORMAT = 1
INDEX_NAME = "labels.json"
#: Random draws of :data:`MIN_PHOTOS` per class behind ``shot_deficit``.
SHOT_DRAWS = 30
#: Share of a class's own validation images ``accept_similarity`` lets through (as the gate's 95%).
ACCEPT_QUANTILE = 0.05
#: The smallest prototype temperature: a validation set the prototypes separate perfectly drives
#: the NLL optimum towards 0 (hard 0/1 answers); this keeps taught answers' probabilities graded.
MIN_TEMPERATURE = 0.01
EMBED_BATCH = 16
#: A kept photo's file name: the SHA-256 of its bytes and the extension it is filed with (a name
#: read from the index that is not one is refused: it never becomes a path outside the folder).
PHOTO_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tif)$")


class TeachError(TagtellerError):
    """A label that cannot be taught, forgotten or scored (the message says why); ``failures``
    lists the photos that failed on the way, ``(name, reason)``."""

    def __init__(self, message: str, failures: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


# -- class references (stored in the model) -------------------------------------------------

def encode_half(array: np.ndarray) -> str:
    """``array`` as base64 of little-endian float16 (compact JSON-safe storage)."""
    return base64.b64encode(np.asarray(array, "<f2").tobytes()).decode("ascii")


def decode_half(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array :func:`encode_half` stored, checked against ``shape``."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    want = int(np.prod(shape)) * 2
    if len(raw) != want:
        raise ValueError(f"{len(raw)} bytes where {want} were expected for shape {shape}")
    return np.frombuffer(raw, "<f2").astype(np.float32).reshape(shape)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototypes_of(embeddings: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The normalised mean of each class's normalised embeddings, ``(count, D)``."""
    e = l2_normalise(embeddings)
    labels = np.asarray(labels, int)
    out = np.zeros((count, e.shape[1]), np.float32)
    for c in range(count):
        members = e[labels == c]
        if len(members) == 0:
            raise TeachError(f"class {c} has no reference embeddings")
        out[c] = members.mean(axis=0)
    return l2_normalise(out)


def fit_prototype_temperature(similarities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``softmax(similarities / T)`` (a cosine scale:
    searched over [5e-4, 0.2] with :func:`tagteller.openset.fit_temperature`), at least
    :data:`MIN_TEMPERATURE`."""
    from tagteller.openset import fit_temperature

    fitted = fit_temperature([np.asarray(similarities, np.float64) * 100.0], np.asarray(labels, int)) / 100.0
    return max(fitted, MIN_TEMPERATURE)


def class_references(embeddings: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                     seed: int = 0) -> dict[str, Any]:
    """The ``class_references`` metadata object for a model whose validation images have these
    ``embeddings`` (the model's ``embedding`` output) and class indices ``labels``: the
    prototypes and the statistics described in the module docstring. A few KB per class."""
    e = l2_normalise(embeddings)
    labels = np.asarray(labels, int)
    count = len(label_names)
    prototypes = prototypes_of(e, labels, count)
    sums = np.stack([e[labels == c].sum(axis=0) for c in range(count)])
    sizes = np.bincount(labels, minlength=count)
    sims = e @ prototypes.T
    # each image against its own class's prototype without itself (leave-one-out)
    own = np.empty(len(e), np.float32)
    for i, (vec, c) in enumerate(zip(e, labels)):
        rest = sums[c] - vec if sizes[c] > 1 else sums[c]
        own[i] = float(vec @ l2_normalise(rest))
    loo = sims.copy()
    loo[np.arange(len(e)), labels] = own
    temperature = fit_prototype_temperature(loo, labels)
    rng = np.random.default_rng(seed)
    deficits = []
    for c in range(count):
        members = e[labels == c]
        if len(members) <= MIN_PHOTOS:
            continue
        own_c = own[labels == c]
        for _ in range(SHOT_DRAWS):
            picked = rng.permutation(len(members))
            shot = l2_normalise(members[picked[:MIN_PHOTOS]].mean(axis=0))
            rest = picked[MIN_PHOTOS:]
            deficits.append(float(np.mean(own_c[rest] - members[rest] @ shot)))
    accuracy = float((loo.argmax(axis=1) == labels).mean())
    return {
        "format": REFERENCES_FORMAT,
        "method": "per-class prototypes (normalised mean of the L2-normalised validation embeddings); "
                  "similarities are cosine; statistics leave each image out of its own prototype",
        "labels": list(label_names),
        "dimension": int(e.shape[1]),
        "prototypes": encode_half(prototypes),
        "counts": [int(n) for n in sizes],
        "temperature": round(temperature, 6),
        "shot_deficit": round(float(np.mean(deficits)) if deficits else 0.0, 6),
        "shots": MIN_PHOTOS,
        "accept_similarity": round(float(np.quantile(own, ACCEPT_QUANTILE)), 6),
        "own_similarity_median": round(float(np.median(own)), 6),
        "prototype_accuracy": round(accuracy, 6),
    }


@dataclass(frozen=True)
class ClassReferences:
    """A model's parsed ``class_references`` (see :func:`class_references`)."""

    labels: tuple[str, ...]
    prototypes: np.ndarray  # (classes, D), normalised
    temperature: float
    shot_deficit: float
    accept_similarity: float

    @classmethod
    def from_metadata(cls, data: Any, model_labels: Sequence[str], where: str) -> ClassReferences:
        """Parse and check the metadata object; raise :class:`TeachError` saying what is wrong."""
        try:
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            labels = tuple(data["labels"])
            if labels != tuple(model_labels):
                raise ValueError("its labels are not the model's")
            dim = int(data["dimension"])
            prototypes = decode_half(data["prototypes"], (len(labels), dim))
            values = [float(data[k]) for k in ("temperature", "shot_deficit", "accept_similarity")]
            if not all(np.isfinite(values)) or values[0] <= 0 or not np.isfinite(prototypes).all():
                raise ValueError("a value is not a finite number (or the temperature is not positive)")
        except (KeyError, TypeError, ValueError) as exc:
            raise TeachError(f"{where}: metadata {REFERENCES_KEY!r} is not usable ({exc})") from None
        return cls(labels, l2_normalise(prototypes), *values)


def references_of(model: Any) -> ClassReferences:
    """The class references of a loaded model, or :class:`TeachError` saying why there are none."""
    where = str(model.path)
    if getattr(model, "embedding_name", None) is None:
        raise TeachError(f"{where}: the model has no embedding output, so it cannot learn labels from photos "
                         "(retrain it with this tagteller)")
    data = model.info.class_references
    if data is None:
        raise TeachError(f"{where}: the model has no {REFERENCES_KEY!r} (it predates taught labels); add them with "
                         "`scripts/add_class_references.py --domain DOMAIN DATA --model MODEL` or retrain it")
    return ClassReferences.from_metadata(data, model.info.labels, where)


# -- scoring ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaughtScorer:
    """Scores a model's taught labels beside its own classes (see the module docstring)."""

    references: ClassReferences
    labels: tuple[str, ...]  # the taught labels, in column order after the model's
    prototypes: np.ndarray  # (taught, D), normalised
    photos: tuple[int, ...]  # photos behind each prototype
    accept: np.ndarray  # (taught,): the corrected similarity over which a taught answer is not unknown

    @property
    def corrections(self) -> np.ndarray:
        """The similarity correction of each taught label: the shot deficit, scaled by
        ``MIN_PHOTOS / photos`` (a prototype of more photos is nearer its class's centre)."""
        return np.array([self.references.shot_deficit * MIN_PHOTOS / max(n, MIN_PHOTOS) for n in self.photos],
                        np.float32)

    def similarities(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(own, taught)``: cosine similarities to the model's prototypes and (corrected) to the
        taught ones."""
        e = l2_normalise(embeddings)
        return e @ self.references.prototypes.T, e @ self.prototypes.T + self.corrections

    def apply(self, probabilities: np.ndarray, scores: np.ndarray | None, threshold: float | None,
              embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities over the model's labels then the taught ones, and open-set scores with
        images recognised as a taught label accepted."""
        own, taught = self.similarities(embeddings)
        logits = np.concatenate([own, taught], axis=1).astype(np.float64) / self.references.temperature
        logits -= logits.max(axis=1, keepdims=True)
        q = np.exp(logits)
        q /= q.sum(axis=1, keepdims=True)
        share = q[:, own.shape[1]:]
        probs = np.concatenate([probabilities * (1.0 - share.sum(axis=1, keepdims=True)), share], axis=1)
        if scores is None or threshold is None:
            return probs.astype(np.float32), scores
        scores = np.array(scores, np.float32, copy=True)
        top = probs.argmax(axis=1) - own.shape[1]
        for row in np.flatnonzero(top >= 0):
            similarity = float(taught[row, top[row]])
            accept = float(self.accept[top[row]])
            if similarity >= accept and not scores[row] <= threshold:
                margin = (similarity - accept) / max(1.0 - accept, 1e-6)
                scores[row] = threshold - (abs(threshold) or 1.0) * min(margin, 1.0)
        return probs.astype(np.float32), scores


def scorer(references: ClassReferences, embeddings_by_label: dict[str, np.ndarray]) -> TaughtScorer:
    """The scorer for taught labels with these photo embeddings (each label's prototype is the
    normalised mean of its photos' normalised embeddings)."""
    names = tuple(embeddings_by_label)
    groups = [l2_normalise(np.asarray(v, np.float32)) for v in embeddings_by_label.values()]
    protos = (np.stack([l2_normalise(g.mean(axis=0)) for g in groups])
              if names else np.zeros((0, references.prototypes.shape[1]), np.float32))
    accept = np.array([min(references.accept_similarity, _lowest_left_out(g, references)) for g in groups],
                      np.float32)
    return TaughtScorer(references, names, protos, tuple(len(g) for g in groups), accept)


def _lowest_left_out(group: np.ndarray, references: ClassReferences) -> float:
    """The lowest similarity of one of a label's photos to the prototype of the others, with the
    shot correction for that many photos (inf for a single photo: nothing to compare)."""
    if len(group) < 2:
        return float("inf")
    total = group.sum(axis=0)
    correction = references.shot_deficit * MIN_PHOTOS / max(len(group) - 1, MIN_PHOTOS)
    return float(min(vec @ l2_normalise(total - vec) for vec in group)) + correction


# -- storage ------------------------------------------------------------------------------

def taught_dir(domain: str) -> Path:
    return data_dir() / "taught" / validate_domain_name(domain)


def index_path(domain: str) -> Path:
    return taught_dir(domain) / INDEX_NAME


def photos_dir(domain: str) -> Path:
    return taught_dir(domain) / "photos"


@dataclass(frozen=True)
class TaughtLabel:
    """One taught label: its photos (file names under ``photos/``) and when it was last taught."""

    label: str
    photos: tuple[str, ...]
    taught_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"photos": list(self.photos), "taught_at": self.taught_at}


def read_index(domain: str) -> dict[str, TaughtLabel]:
    """The domain's taught labels (empty when none); a damaged index is an error, not silence."""
    path = index_path(domain)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = data["labels"]
        out = {}
        for name, entry in labels.items():
            photos = tuple(str(p) for p in entry["photos"])
            strange = [p for p in photos if not PHOTO_NAME.match(p)]
            if strange:
                raise ValueError(f"label {name!r} lists {strange[0]!r}, not a kept photo's name")
            out[validate_label(name)] = TaughtLabel(name, photos, str(entry.get("taught_at", "")))
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InvalidNameError) as exc:
        raise TeachError(f"{path}: taught labels cannot be read ({exc.__class__.__name__}: {exc}); "
                         "`tagteller forget` a label or remove the file") from None


def write_index(domain: str, labels: dict[str, TaughtLabel]) -> None:
    data = {"format": 1, "domain": domain, "labels": {k: v.as_dict() for k, v in sorted(labels.items())}}
    atomic_write_text(index_path(domain), json.dumps(data, indent=1, sort_keys=True) + "\n")


def embeddings_path(domain: str, model_sha256: str) -> Path:
    return taught_dir(domain) / "embeddings" / f"{model_sha256[:16]}.npz"


@dataclass
class StoredEmbeddings:
    """The embeddings of a domain's taught photos by one model file."""

    model_sha256: str
    model_version: str
    photos: dict[str, np.ndarray] = field(default_factory=dict)  # photo file name -> embedding

    def save(self, domain: str) -> None:
        names = sorted(self.photos)
        dim = next(iter(self.photos.values())).shape[0] if names else 0
        arrays = np.stack([self.photos[n] for n in names]) if names else np.zeros((0, dim), np.float32)
        meta = json.dumps({"model_sha256": self.model_sha256, "model_version": self.model_version,
                           "saved": now()})
        with atomic_open(embeddings_path(domain, self.model_sha256), "wb") as fh:
            np.savez(fh, photos=np.array(names, dtype=str), embeddings=arrays.astype(np.float32),
                     meta=np.array(meta))

    @classmethod
    def load(cls, domain: str, model_sha256: str, model_version: str) -> StoredEmbeddings:
        """The stored embeddings for this model file (empty when there are none or they are unreadable)."""
        path = embeddings_path(domain, model_sha256)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    if meta.get("model_sha256") == model_sha256:
                        return cls(model_sha256, meta.get("model_version", model_version),
                                   dict(zip(data["photos"].tolist(), np.asarray(data["embeddings"], np.float32))))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("warning: %s: unreadable, the taught photos will be embedded again (%s)", path, exc)
        return cls(model_sha256, model_version)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_sha256(model: Any) -> str:
    """The SHA-256 of a loaded model's file (computed once per loaded model)."""
    digest = getattr(model, "_sha256", None)
    if digest is None:
        digest = hashlib.sha256(Path(model.path).read_bytes()).hexdigest()
        model._sha256 = digest
    return digest


# -- embedding photos -----------------------------------------------------------------------

def embed_sources(model: Any, sources: Sequence[Any]) -> tuple[list[np.ndarray | None], list[str | None]]:
    """The model's embedding of each source (decoded by the engine's own pipeline), or the reason
    it failed: ``(embeddings, errors)`` in input order, one of each None per source."""
    arrays: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for src in sources:
        try:
            arrays.append(model.prepare(src))
            errors.append(None)
        except ImageError as exc:
            arrays.append(None)
            errors.append(str(exc))
        except MemoryError:
            arrays.append(None)
            errors.append("out of memory while decoding")
    good = [(i, a) for i, a in enumerate(arrays) if a is not None]
    out: list[np.ndarray | None] = [None] * len(sources)
    for start in range(0, len(good), EMBED_BATCH):
        chunk = good[start:start + EMBED_BATCH]
        vectors = model.embed(np.stack([a for _, a in chunk]))
        for (i, _), vec in zip(chunk, vectors):
            out[i] = np.asarray(vec, np.float32)
    return out, errors


# -- what the engine calls ------------------------------------------------------------------

_lock = threading.Lock()


def scorer_for(model: Any) -> TaughtScorer | None:
    """The scorer for ``model``'s taught labels, or None when its domain has none (or the model
    cannot score them: said once on stderr). Cheap when nothing changed (one ``stat``); after
    ``teach``/``forget`` or for a new model file it reloads, embedding stored photos the model
    has not seen yet."""
    domain = model.info.domain
    try:
        stamp = index_path(domain).stat().st_mtime_ns
    except OSError:
        return None
    cached = getattr(model, "_taught", None)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with _lock:
        cached = getattr(model, "_taught", None)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            found = _load_scorer(model)
        except (TeachError, ModelError, OSError) as exc:  # taught labels never stop a scan
            log.warning("warning: taught labels of %s not used: %s", domain, exc)
            found = None
        model._taught = (stamp, found)
        return found


def _load_scorer(model: Any) -> TaughtScorer | None:
    domain = model.info.domain
    index = read_index(domain)
    if not index:
        return None
    references = references_of(model)
    stored, changed = refresh_embeddings(model, index)
    by_label: dict[str, np.ndarray] = {}
    for label, entry in index.items():
        vectors = [stored.photos[p] for p in entry.photos if p in stored.photos]
        if len(vectors) < MIN_PHOTOS:
            log.warning("warning: taught label %r of %s has %d usable photo(s) for model %s (it needs %d): "
                        "teach it again", label, domain, len(vectors), model.info.model_version, MIN_PHOTOS)
            continue
        if label in model.info.labels:
            log.warning("warning: taught label %r of %s is now one of the model's own labels; the model answers "
                        "for it (`tagteller forget --domain %s %s` removes the taught copy)", label, domain, domain, label)
            continue
        by_label[label] = np.stack(vectors)
    if changed:
        log.warning("note: taught labels of %s embedded by model %s (%d photo(s))", domain,
                    model.info.model_version, changed)
    return scorer(references, by_label) if by_label else None


def refresh_embeddings(model: Any, index: dict[str, TaughtLabel]) -> tuple[StoredEmbeddings, int]:
    """The stored embeddings by ``model`` of every photo in ``index``, embedding (and saving)
    those it has not seen: after a model upgrade, all of them. Returns them and how many were new."""
    domain = model.info.domain
    digest = model_sha256(model)
    stored = StoredEmbeddings.load(domain, digest, model.info.model_version)
    wanted = sorted({p for entry in index.values() for p in entry.photos})
    missing = [p for p in wanted if p not in stored.photos]
    if not missing:
        return stored, 0
    folder = photos_dir(domain)
    vectors, errors = embed_sources(model, [folder / p for p in missing])
    added = 0
    for name, vec, err in zip(missing, vectors, errors):
        if vec is None:
            log.warning("warning: taught photo %s cannot be embedded: %s", folder / name, err)
            continue
        stored.photos[name] = vec
        added += 1
    if added:
        try:
            stored.save(domain)
        except OSError as exc:  # a read-only data folder: use them, embed again next time
            log.warning("warning: taught embeddings not saved (%s)", exc)
    return stored, added


# -- teach, forget, list ----------------------------------------------------------------------

@dataclass
class TeachReport:
    """What :func:`teach` did: the label, photos added and in all, per-photo problems, and how
    well the label's own photos are recognised when each is left out of its prototype."""

    domain: str
    label: str
    model_version: str
    added: int
    total: int
    already: int
    failures: list[tuple[str, str]]
    left_out_recognised: int = 0
    nearest_own: str = ""
    nearest_similarity: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "label": self.label, "model_version": self.model_version,
                "added": self.added, "photos": self.total, "already_taught": self.already,
                "failed": [{"source": s, "error": e} for s, e in self.failures],
                "left_out_recognised": self.left_out_recognised, "nearest_own_label": self.nearest_own,
                "nearest_own_similarity": round(self.nearest_similarity, 4)}


def check_teachable(domain: Any, label: str, model_labels: Sequence[str] = ()) -> str:
    """``label`` if ``domain`` may learn it; otherwise :class:`TeachError` with the reason."""
    label = validate_label(label)
    own = list(dict.fromkeys([*domain.labels, *model_labels]))
    if label in own:
        raise TeachError(f"{label!r} is already a label of domain {domain.name!r}; to improve it, file photos "
                         f"with `tagteller scan --domain {domain.name} --correct {label} PHOTO...`")
    if not domain.allow_new_labels:
        raise TeachError(f"domain {domain.name!r} does not accept new labels (labels: {', '.join(own)})")
    clash = [k for k in own if k.casefold() == label.casefold()]
    if clash:
        raise TeachError(f"{label!r} differs from the label {clash[0]!r} only in letter case; use {clash[0]!r}")
    return label


def _read_photo(source: Any) -> bytes:
    from tagteller.imaging import MAX_FILE_BYTES

    path = Path(source)
    try:
        if path.is_dir():
            raise ImageError("is a directory")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"file is over the {MAX_FILE_BYTES // 2**20} MB limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(exc.strerror.lower() if exc.strerror else exc.__class__.__name__) from None


def teach(domain: Any, model: Any, label: str, sources: Iterable[Any], names: Sequence[str] | None = None) -> TeachReport:
    """Teach ``label`` to ``domain`` (a :class:`~tagteller.domain.Domain`) from the photos
    ``sources`` (paths), for the loaded ``model`` of that domain. A photo that cannot be read or
    decoded is listed in ``failures`` and the others carry on; fewer than :data:`MIN_PHOTOS`
    usable photos for the label (with any taught before) is a :class:`TeachError` and stores
    nothing. A photo taught before under another label moves to this one."""
    from tagteller.feedback import verify_image

    label = check_teachable(domain, label, model.info.labels)
    references = references_of(model)
    sources = list(sources)
    names = list(names) if names is not None else [str(s) for s in sources]
    failures: list[tuple[str, str]] = []
    photos: dict[str, bytes] = {}  # stored file name -> bytes
    named: dict[str, str] = {}  # stored file name -> the name it was given as
    for src, name in zip(sources, names):
        try:
            data = _read_photo(src)
            ext = verify_image(data)
        except ImageError as exc:
            failures.append((name, str(exc)))
            continue
        key = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        photos.setdefault(key, data)
        named.setdefault(key, name)
    keys = list(photos)
    vectors, errors = embed_sources(model, [photos[k] for k in keys])
    embedded: dict[str, np.ndarray] = {}
    for key, vec, err in zip(keys, vectors, errors):
        if vec is None:
            failures.append((named[key], err or "cannot be embedded"))
        else:
            embedded[key] = vec
    with _lock:
        index = read_index(domain.name)
        before = index.get(label)
        earlier = list(before.photos) if before else []
        total = list(dict.fromkeys(earlier + list(embedded)))
        if len(total) < MIN_PHOTOS:
            got = f"{len(embedded)} usable photo(s)" + (f" and {len(earlier)} taught before" if earlier else "")
            raise TeachError(f"teaching {label!r} needs at least {MIN_PHOTOS} photos that decode; got {got}", failures)
        stored, _ = refresh_embeddings(model, index)
        for key, vec in embedded.items():
            target = photos_dir(domain.name) / key
            if not target.is_file():
                atomic_write_bytes(target, photos[key])
            stored.photos[key] = vec
        stored.save(domain.name)
        for other, entry in list(index.items()):  # one photo, one label: the latest wins
            if other != label and set(entry.photos) & set(embedded):
                index[other] = TaughtLabel(other, tuple(p for p in entry.photos if p not in embedded), entry.taught_at)
        index[label] = TaughtLabel(label, tuple(total), now())
        write_index(domain.name, index)
    report = TeachReport(domain.name, label, model.info.model_version, len(set(embedded) - set(earlier)),
                         len(total), len(set(embedded) & set(earlier)), failures)
    _describe_fit(report, references, [stored.photos[p] for p in total], index, stored, label)
    return report


def _describe_fit(report: TeachReport, references: ClassReferences, vectors: list[np.ndarray],
                  index: dict[str, TaughtLabel], stored: StoredEmbeddings, label: str) -> None:
    """How many of the label's own photos are nearest its prototype when each is left out of it
    (against the model's prototypes and the other taught labels), and its nearest own class."""
    others = {k: np.stack([stored.photos[p] for p in v.photos if p in stored.photos])
              for k, v in index.items() if k != label and sum(p in stored.photos for p in v.photos) >= MIN_PHOTOS}
    recognised = 0
    for i in range(len(vectors)):
        rest = np.stack([v for j, v in enumerate(vectors) if j != i])
        s = scorer(references, {**others, label: rest})
        own, taught = s.similarities(vectors[i][None])
        columns = list(references.labels) + list(s.labels)
        best = int(np.concatenate([own, taught], axis=1)[0].argmax())
        recognised += columns[best] == label
    report.left_out_recognised = recognised
    centre = l2_normalise(l2_normalise(np.stack(vectors)).mean(axis=0))
    sims = references.prototypes @ centre
    report.nearest_own = references.labels[int(sims.argmax())]
    report.nearest_similarity = float(sims.max())


def forget(domain: str, label: str) -> int:
    """Remove a taught label and the photos only it used; returns how many photos were removed.
    :class:`TeachError` when the domain has no such taught label."""
    label = validate_label(label)
    with _lock:
        index = read_index(domain)
        if label not in index:
            taught = ", ".join(sorted(index)) or "none"
            raise TeachError(f"{label!r} is not a taught label of domain {domain!r} (taught: {taught})")
        entry = index.pop(label)
        still = {p for e in index.values() for p in e.photos}
        if index:
            write_index(domain, index)
        else:
            index_path(domain).unlink(missing_ok=True)
        removed = 0
        for name in entry.photos:
            if name not in still:
                path = photos_dir(domain) / name
                if path.is_file():
                    path.unlink()
                    removed += 1
        folder = taught_dir(domain) / "embeddings"
        for path in sorted(folder.glob("*.npz")) if folder.is_dir() else ():
            _prune(path, still)
        return removed


def _prune(path: Path, keep: set[str]) -> None:
    """Drop from one embeddings file the photos no label uses any more (remove it when empty)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = data["photos"].tolist()
            vectors = np.asarray(data["embeddings"], np.float32)
            meta = str(data["meta"])
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)
        return
    kept = [i for i, n in enumerate(names) if n in keep]
    if not kept:
        path.unlink(missing_ok=True)
        return
    with atomic_open(path, "wb") as fh:
        np.savez(fh, photos=np.array([names[i] for i in kept], dtype=str), embeddings=vectors[kept],
                 meta=np.array(meta))


def taught_domains() -> list[str]:
    """Domains with taught labels, sorted."""
    return [folder.name for folder in domain_folders("taught") if (folder / INDEX_NAME).is_file()]


def label_status(domain: str, model: Any | None) -> list[dict[str, Any]]:
    """One row per taught label of ``domain``: photos kept, when taught, and whether the
    domain's current ``model`` (a loaded model, or None: no model) has embedded them."""
    index = read_index(domain)
    stored = None
    if model is not None:
        stored = StoredEmbeddings.load(domain, model_sha256(model), model.info.model_version)
    unusable = embedding_model_error(model) if model is not None else None
    rows = []
    for label, entry in sorted(index.items()):
        kept = [p for p in entry.photos if (photos_dir(domain) / p).is_file()]
        if model is None:
            state = "no model"
        elif unusable is not None:
            state = f"not used: {unusable}"
        elif label in model.info.labels:
            state = f"now one of model {model.info.model_version}'s own labels (forget it)"
        elif stored is not None and sum(p in stored.photos for p in entry.photos) >= MIN_PHOTOS:
            state = f"ready (model {model.info.model_version})"
        elif len(kept) >= MIN_PHOTOS:
            state = f"photos kept; embedded by model {model.info.model_version} at the next scan"
        else:
            state = f"teach again: {len(kept)} of its photos left"
        rows.append({"domain": domain, "label": label, "photos": len(entry.photos), "kept": len(kept),
                     "taught_at": entry.taught_at, "state": state})
    return rows


def teach_offer(domain: Any, label: str) -> dict[str, Any] | None:
    """What the page offers after a photo is filed under ``label`` in the feedback inbox: to
    teach the label from the inbox's photos of it (``ready`` once there are :data:`MIN_PHOTOS`
    and some are not taught yet). None for labels the domain has or may not learn."""
    from tagteller.feedback import list_feedback

    try:
        check_teachable(domain, label)
        index = read_index(domain.name)
    except TagtellerError:
        return None
    filed = [item.path.name for item in list_feedback(domain.name) if item.label == label]
    known = set(index[label].photos) if label in index else set()
    fresh = [name for name in filed if name not in known]
    return {"label": label, "photos": len(filed), "new_photos": len(fresh), "taught": label in index,
            "needs": MIN_PHOTOS, "ready": len(filed) >= MIN_PHOTOS and bool(fresh)}


def teach_from_feedback(domain: Any, model: Any, label: str) -> TeachReport:
    """:func:`teach` from the photos filed under ``label`` in the domain's feedback inbox."""
    from tagteller.feedback import list_feedback

    paths = [item.path for item in list_feedback(domain.name) if item.label == label]
    return teach(domain, model, label, paths, [str(p) for p in paths])


def taught_samples(domain: str) -> list[Any]:
    """Taught photos as training samples (``tagteller train --with-taught``): ``key`` is
    ``taught/<label>/<file name>``, ``label`` the taught label, ``path`` the kept photo."""
    from tagteller.datasets import Sample

    out = []
    for label, entry in sorted(read_index(domain).items()):
        for name in entry.photos:
            path = photos_dir(domain) / name
            if path.is_file():
                out.append(Sample(key=f"taught/{label}/{name}", label=label, path=path))
    return out


def embedding_model_error(model: Any) -> str | None:
    """Why ``model`` cannot score taught labels, or None when it can."""
    try:
        references_of(model)
    except (TeachError, ModelError) as exc:
        return str(exc)
    return None


__all__ = ["MIN_PHOTOS", "REFERENCES_KEY", "ClassReferences", "TaughtScorer", "TeachError", "TeachReport",
           "class_references", "forget", "label_status", "read_index", "scorer", "scorer_for", "taught_samples",
           "teach"]
