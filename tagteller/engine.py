"""The one inference engine every domain shares: onnxruntime sessions and a decode pipeline.

- :meth:`Engine.load` opens a model file once (cached by path, size and mtime), checks its
  metadata against the graph, and returns a :class:`LoadedModel`.
- :meth:`Engine.scan` streams :class:`ScanResult` objects, in input order, for any iterable of
  images. One worker thread per core takes a batch at a time, decodes it (Pillow releases the GIL
  while decoding) and runs it through onnxruntime (which releases it too), so decoding and
  inference overlap across workers and no core waits for another stage. A file that fails to
  decode becomes a result with ``error`` set; the rest of the batch carries on.
- A model with an open-set score (metadata ``open_set``) also scores how unlike its training
  images each image is; over the model's threshold the result is ``unknown`` (status
  ``"unknown"``: its ``predictions`` are kept as the model's best guesses) unless the caller
  accepts unknowns. Models without one answer as they always did.
- Labels taught from a few photos (``tagteller teach``: :mod:`tagteller.taught`) are scored on
  the model's ``embedding`` output beside its own classes (:meth:`LoadedModel.predict_answers`).
- :meth:`Engine.scan_any` runs several domains' models on each image and answers with the one
  that accepts it most confidently (:func:`rank_answers` is the rule). Models whose input size
  and preprocessing match share one decode of the image.
- Every result carries ``timing_ms``: the milliseconds each step spent on that image (decode,
  inference, taught-label scoring; text reading is added by :mod:`tagteller.text_cues`), as
  ultralytics' ``Results.speed`` does. A batch's inference is shared out evenly over its images.
- :meth:`ScanResult.failure` is the one way to make a result for an input that never got an
  answer (an argument that named nothing, a file that did not decode).

How this was tuned (decode workers against intra-op threads, batch size, JPEG draft size) and the
throughput it reaches against the machine's bound are in ``benchmarks/`` and BENCHMARKS.md.

Only numpy, Pillow and onnxruntime are imported here.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller import taught
from tagteller.errors import ImageError, ModelError
from tagteller.imaging import ImageSource, prepare
from tagteller.modelfile import ModelInfo, parse_metadata

#: onnxruntime intra-op threads per run (see :class:`Engine`).
DEFAULT_INTRA_THREADS = 1
#: The graph output holding the probabilities (when no output has this name: the first one).
PROBABILITIES_OUTPUT = "probabilities"
#: The steps of ``ScanResult.timing_ms``, in the order they run.
DECODE, INFERENCE, TAUGHT_LABELS, TEXT_READING = "decode", "inference", "taught_labels", "text_reading"


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


@dataclass
class ScanResult:
    """The outcome for one input: top-k predictions, or an error with its reason.

    ``status`` is ``"ok"``, ``"unknown"`` (the model's open-set score is over its threshold: the
    image is not like anything the domain knows; ``predictions`` still hold its best guesses) or
    ``"error"``. ``ok`` means "scanned" (no error), so an unknown is ``ok`` too: it is an answer.
    """

    source: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    domain: str = ""
    model_version: str = ""
    index: int = 0  # position in the input stream
    #: The model's open-set score (higher: less like its training images); None when the model
    #: has no open-set output. A score that is not finite (NaN, an infinity) is always rejected.
    ood_score: float | None = None
    #: The score over which the model rejects an image (None: no open-set output).
    ood_threshold: float | None = None
    #: The answer is "unknown": rejected by the model and not accepted anyway by the caller.
    unknown: bool = False
    #: Scans over several domains (:meth:`Engine.scan_any`): the other domains' answers, best
    #: first. None for a scan with one model.
    alternatives: list[ScanResult] | None = None
    #: The text read from the photo (``scan --read-text``, :mod:`tagteller.text_cues`); None when
    #: no text was read.
    text: str | None = None
    #: The domain's text cue that text matched (a :class:`tagteller.text_cues.TextMatch`; its
    #: ``overrode`` says it replaced the image model's answer); None when none matched or no text
    #: was read.
    text_match: Any = None
    #: Milliseconds each step spent on this image (:data:`DECODE`, :data:`INFERENCE`,
    #: :data:`TAUGHT_LABELS`, :data:`TEXT_READING`; only the steps that ran). A batch's inference
    #: counts in equal shares for its images; over several domains, every model's share is summed.
    timing_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def failure(cls, source: str, reason: str, domain: str = "", model_version: str = "", index: int = 0,
                every_domain: bool = False) -> ScanResult:
        """The result for an input without an answer: ``reason`` is its error. ``domain`` and
        ``model_version`` are those of the model it was for; ``every_domain``: a scan over every
        domain (no domain answered: ``alternatives`` is empty, not None)."""
        return cls(source=source, error=reason, domain=domain, model_version=model_version, index=index,
                   alternatives=[] if every_domain else None)

    @property
    def ok(self) -> bool:
        """Scanned without an error (an ``unknown`` answer included)."""
        return self.error is None

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "unknown" if self.unknown else "ok"

    @property
    def rejected(self) -> bool:
        """The model's own verdict: its open-set score is over its threshold (or not finite),
        whether or not the caller accepted the answer anyway."""
        if self.ood_score is None or self.ood_threshold is None:
            return False
        return not math.isfinite(self.ood_score) or self.ood_score > self.ood_threshold

    @property
    def top(self) -> Prediction | None:
        return self.predictions[0] if self.predictions else None


def acceptance_margin(score: float, threshold: float) -> float:
    """How far under its threshold an open-set score is, relative to the threshold:
    ``(threshold - score) / |threshold|``. Positive: accepted; the larger, the more confidently.
    For a distance score (threshold > 0) it is ``1 - score / threshold``, so comparing margins
    across models compares their score/threshold ratios. Scores that are not finite get -inf."""
    if not math.isfinite(score):
        return -math.inf
    return (threshold - score) / (abs(threshold) or 1.0)


def rank_answers(results: list[ScanResult]) -> list[ScanResult]:
    """Several domains' results for one image, best answer first. The rule:

    1. models with an open-set score that accept the image, the most confident first;
    2. then models without an open-set score (they accept everything), highest top-1
       probability first;
    3. then models that reject the image, the closest first;
    4. then errors.

    "Most confident" and "closest": the lowest score, when every scored model's score is a
    probability (threshold in [0, 1]: the logistic gate of every model ``tagteller train``
    exports, which each domain's gate estimates against the same other domains, so the
    probabilities compare across models); else the largest :func:`acceptance_margin`. On the
    shipped models' validation images the lowest probability names the right domain for 99.0%
    of them, the margin for 96.4%: a sneaker photo is inside apparel's threshold too, but the
    shoes gate is far surer (MODELS.md).

    So the answer comes from a model that says it knows this kind of image, when there is one;
    when every model rejects it, the first is the closest domain and the answer is ``unknown``.
    Ties keep the order given.
    """
    scored = [r for r in results if r.ok and r.ood_score is not None and r.ood_threshold is not None]
    probabilities = all(0.0 <= float(r.ood_threshold) <= 1.0 for r in scored)  # type: ignore[arg-type]

    def key(r: ScanResult) -> tuple[int, float]:
        if not r.ok:
            return (3, 0.0)
        if r.ood_score is None or r.ood_threshold is None:
            return (1, -(r.top.probability if r.top else 0.0))
        if probabilities:
            closeness = -r.ood_score if math.isfinite(r.ood_score) else -math.inf
        else:
            closeness = acceptance_margin(r.ood_score, r.ood_threshold)
        return (2 if r.rejected else 0, -closeness)

    return sorted(results, key=key)


def choose_answer(results: list[ScanResult]) -> ScanResult:
    """The best of several domains' results for one image (:func:`rank_answers`), carrying the
    others in ``alternatives``. An image that failed for every model is one error, for no domain."""
    best, *others = rank_answers(results)
    if not best.ok:
        return ScanResult.failure(best.source, best.error or "failed", index=best.index, every_domain=True)
    best.alternatives = others
    return best


def display_name(source: Any) -> str:
    """A printable one-line name for an input: the path, with undecodable bytes and non-printable
    characters (newlines, terminal escapes, bidi overrides) escaped; or a placeholder."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fsdecode(source).encode("utf-8", "backslashreplace").decode("utf-8")
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))}>"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_predictions(probs: np.ndarray, labels: tuple[str, ...], k: int) -> list[Prediction]:
    """The ``k`` most probable labels, most probable first."""
    k = max(1, min(k, len(labels)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [Prediction(labels[i], float(probs[i])) for i in order]


class LoadedModel:
    """An onnxruntime session with its parsed, checked metadata."""

    def __init__(self, path: Path, session: Any, info: ModelInfo) -> None:
        self.path = path
        self.session = session
        self.info = info
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{path}: expected one input and an output, found {len(inputs)} and {len(outputs)}")
        self.input_name = inputs[0].name
        by_name = {o.name: o for o in outputs}
        # Outputs are found by name: "probabilities" (else the first), and the open-set score
        # the metadata names. Others (an embedding, say) are never run.
        probs = by_name.get(PROBABILITIES_OUTPUT, outputs[0])
        self.output_name = probs.name
        self.ood_name: str | None = info.ood_output
        ood_shape = None
        if self.ood_name is not None:
            if self.ood_name not in by_name:
                raise ModelError(f"{path}: metadata 'open_set' names output {self.ood_name!r}, but the graph's "
                                 f"outputs are {', '.join(sorted(by_name))}")
            if self.ood_name == self.output_name:
                raise ModelError(f"{path}: metadata 'open_set' names output {self.ood_name!r}, which holds "
                                 "the probabilities")
            ood_shape = by_name[self.ood_name].shape
        #: The output the metadata names as the embedding (taught labels are scored on it), or None.
        self.embedding_name: str | None = (info.open_set or {}).get("embedding_output")
        if self.embedding_name not in by_name or self.embedding_name in (self.output_name, self.ood_name):
            self.embedding_name = None
        self._check_shapes(inputs[0].shape, probs.shape, ood_shape)

    def _check_shapes(self, in_shape: list, out_shape: list, ood_shape: list | None) -> None:
        info = self.info
        if len(in_shape) != 4:
            raise ModelError(f"{self.path}: input must be NHWC (4 dimensions), graph has {in_shape}")
        want = [info.height, info.width, info.channels]
        for got, exp, what in zip(in_shape[1:], want, ("height", "width", "channels")):
            if isinstance(got, int) and got != exp:
                raise ModelError(f"{self.path}: metadata says input {what} {exp}, the graph has {got}")
        if len(out_shape) != 2:
            raise ModelError(f"{self.path}: output must be (batch, classes), graph has {out_shape}")
        if isinstance(out_shape[1], int) and out_shape[1] != len(info.labels):
            raise ModelError(
                f"{self.path}: {len(info.labels)} labels in metadata but the model outputs {out_shape[1]} classes"
            )
        if ood_shape is not None and not (len(ood_shape) == 1 or (len(ood_shape) == 2 and ood_shape[1] == 1)):
            raise ModelError(f"{self.path}: open-set output {self.ood_name!r} must be one score per image "
                             f"(batch,), graph has {ood_shape}")
        if not all(isinstance(d, int) for d in (*in_shape[1:], out_shape[1])):
            # Symbolic sizes say nothing: run one blank image now, so that a model that does not fit
            # its metadata fails here (and in `tagteller info`), not halfway through a batch.
            self.predict_with_scores(np.zeros((1, info.height, info.width, info.channels), np.float32))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, classes)`` for a float32 batch ``(N, H, W, C)`` in [0, 255]."""
        return self._run(batch, with_scores=False)[0]

    def predict_with_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N, classes)`` and open-set scores ``(N,)`` (None when the model has no
        open-set output) for a float32 batch ``(N, H, W, C)`` in [0, 255]."""
        return self._run(batch, with_scores=self.ood_name is not None)[:2]

    def predict_answers(self, batch: np.ndarray, timing_ms: dict[str, float] | None = None,
                        ) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
        """What a scan answers with: probabilities over the model's labels and then the labels
        taught to its domain (:func:`tagteller.taught.scorer_for`; none: the model's alone), the
        open-set scores (an image recognised as a taught label is accepted), and the labels in
        column order. ``timing_ms``, when given, gets the milliseconds of the whole batch's
        :data:`INFERENCE` and (with taught labels) :data:`TAUGHT_LABELS` scoring."""
        steps = timing_ms if timing_ms is not None else {}
        started = time.perf_counter()
        scorer = taught.scorer_for(self) if self.embedding_name is not None else None
        if scorer is None:
            probs, scores = self.predict_with_scores(batch)
            steps[INFERENCE] = (time.perf_counter() - started) * 1000
            return probs, scores, self.info.labels
        probs, scores, embeddings = self._run_with_embedding(batch, with_scores=self.ood_name is not None)
        ran = time.perf_counter()
        probs, scores = scorer.apply(probs, scores, self.info.ood_threshold, embeddings)
        steps[INFERENCE] = (ran - started) * 1000
        steps[TAUGHT_LABELS] = (time.perf_counter() - ran) * 1000
        return probs, scores, self.info.labels + scorer.labels

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """The model's embedding ``(N, D)`` of a float32 batch (ModelError when it has none)."""
        if self.embedding_name is None:
            raise ModelError(f"{self.path}: the model has no embedding output")
        return self._run_with_embedding(batch, with_scores=False)[2]

    def _run_with_embedding(self, batch: np.ndarray,
                            with_scores: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        probs, scores, embeddings = self._run(batch, with_scores, with_embedding=True)
        assert embeddings is not None  # _run returns them whenever with_embedding is set
        return probs, scores, embeddings

    def _run(self, batch: np.ndarray, with_scores: bool,
             with_embedding: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        names = [self.output_name, self.ood_name] if with_scores else [self.output_name]
        if with_embedding:
            names.append(self.embedding_name)
        try:
            outs = self.session.run(names, {self.input_name: batch})
        except MemoryError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for graphs that fail
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelError(f"{self.path}: the model failed on a {batch.shape} input ({first[:200]})") from None
        out = np.asarray(outs[0], dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != len(self.info.labels):
            raise ModelError(
                f"{self.path}: {len(self.info.labels)} labels in metadata but the model outputs shape {out.shape}"
            )
        if self.info.output == "logits":
            out = softmax(out)
        scores = None
        if with_scores:
            scores = np.asarray(outs[1], dtype=np.float32)
            if scores.size != len(batch) or (scores.ndim == 2 and scores.shape[1] != 1) or scores.ndim > 2:
                raise ModelError(f"{self.path}: open-set output {self.ood_name!r} has shape {scores.shape} "
                                 f"for a batch of {len(batch)}; expected one score per image")
            scores = scores.reshape(len(batch))
        embeddings = None
        if with_embedding:
            embeddings = np.asarray(outs[-1], dtype=np.float32)
            if embeddings.ndim != 2 or len(embeddings) != len(batch):
                raise ModelError(f"{self.path}: embedding output {self.embedding_name!r} has shape "
                                 f"{embeddings.shape} for a batch of {len(batch)}; expected (batch, features)")
        return out, scores, embeddings

    def prepare(self, source: ImageSource) -> np.ndarray:
        return prepare(source, self.info.input_size, self.info.preprocessing)


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read and check a model file's metadata (opens it with onnxruntime)."""
    return Engine(intra_threads=1).load(path).info


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Engine:
    """Shared onnxruntime sessions plus a pool of scan workers; safe to share across threads.

    ``decode_workers`` (default: one per core) is the number of worker threads a scan runs its
    batches on; each batch is decoded and then classified by the same worker.
    ``intra_threads`` (default 1) is onnxruntime's thread count *per run*: the workers already run
    batches side by side, and the server classifies requests side by side, so more intra-op
    threads would only compete with them for the same cores (on 2 cores, 2 intra-op threads next to
    2 decoding threads measured slower than 1; see BENCHMARKS.md).
    """

    def __init__(self, intra_threads: int | None = None, decode_workers: int | None = None) -> None:
        self.intra_threads = intra_threads or DEFAULT_INTRA_THREADS
        self.decode_workers = decode_workers or available_cores()
        self._models: dict[tuple[str, int, int], LoadedModel] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- models -----------------------------------------------------------------------------
    def load(self, path: str | os.PathLike[str]) -> LoadedModel:
        """Open ``path`` (or reuse the open session if the file has not changed)."""
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ModelError(f"{path}: model file not found") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
        if path.is_dir():
            raise ModelError(f"{path}: is a directory, not a model file")
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._open(path)
                self._models = {k: v for k, v in self._models.items() if k[0] != key[0]}
                self._models[key] = model
            return model

    def _session_options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.intra_threads > 1:
            # Idle intra-op threads otherwise spin for a while after each run, taking CPU from
            # the decoding threads (measured: 2 spinning threads cost a third of the throughput).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def _open(self, path: Path) -> LoadedModel:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
        return self.open_bytes(data, path)

    def open_bytes(self, data: bytes, path: Path) -> LoadedModel:
        """A model from its serialised bytes, not cached (training measures a model this way
        before writing it); ``path`` names it in errors and on the result."""
        import onnxruntime as ort

        if not data:
            raise ModelError(f"{path}: model file is empty")
        try:
            session = ort.InferenceSession(data, self._session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelError(f"{path}: not a loadable ONNX model ({first[:200]})") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        info = parse_metadata(meta, where=str(path))
        return LoadedModel(path, session, info)

    # -- scanning ---------------------------------------------------------------------------
    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="tagteller-scan")
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def classify(self, model: LoadedModel, source: ImageSource, top_k: int = 3,
                 accept_unknown: bool = False) -> ScanResult:
        """Scan one image synchronously, in the calling thread (the server uses this)."""
        return next(self.scan(model, [source], top_k=top_k, batch_size=1, accept_unknown=accept_unknown,
                              _sync=True))

    def classify_any(self, models: Sequence[LoadedModel], source: ImageSource, top_k: int = 3,
                     accept_unknown: bool = False) -> ScanResult:
        """:meth:`scan_any` for one image, synchronously, in the calling thread (the server)."""
        return next(self.scan_any(models, [source], top_k=top_k, batch_size=1, accept_unknown=accept_unknown,
                                  _sync=True))

    def scan(
        self,
        model: LoadedModel,
        sources: Iterable[ImageSource],
        top_k: int = 3,
        batch_size: int = 16,
        names: Iterable[str] | None = None,
        accept_unknown: bool = False,
        _sync: bool = False,
    ) -> Iterator[ScanResult]:
        """Yield one :class:`ScanResult` per source, in order, as soon as each is ready.

        Sources are cut into batches of at most ``batch_size``; each batch is one task for a
        worker, which decodes its images and runs the ones that decoded through the model, so
        every core is busy with whichever work is ready and no worker waits on another. When the
        number of sources is known (a list), batches shrink towards the end (never below one
        image) so that the last ones finish together instead of leaving a core idle.

        An image the model's open-set score rejects is ``unknown``, unless ``accept_unknown``:
        then it is answered with the best label anyway (its score is still recorded).
        """
        return self._scan([model], lambda results: results[0], sources, top_k, batch_size, names,
                          accept_unknown, _sync)

    def scan_any(
        self,
        models: Sequence[LoadedModel],
        sources: Iterable[ImageSource],
        top_k: int = 3,
        batch_size: int = 16,
        names: Iterable[str] | None = None,
        accept_unknown: bool = False,
        _sync: bool = False,
    ) -> Iterator[ScanResult]:
        """Like :meth:`scan`, with every one of ``models`` (one per domain) run on each image; each
        result is the answer of the model that accepts the image most confidently
        (:func:`rank_answers`), with the other models' answers in ``alternatives``. When every
        model rejects the image the result is the closest model's, ``unknown`` (its best label
        with ``accept_unknown``). An image is an error only when it fails for every model.

        Models whose input size and preprocessing match share one decode of each image; the
        others decode it again, as they need.
        """
        if not models:
            raise ValueError("scan_any needs at least one model")
        return self._scan(list(models), choose_answer, sources, top_k, batch_size, names, accept_unknown, _sync)

    def _scan(
        self,
        models: list[LoadedModel],
        combine: Callable[[list[ScanResult]], ScanResult],
        sources: Iterable[ImageSource],
        top_k: int,
        batch_size: int,
        names: Iterable[str] | None,
        accept_unknown: bool,
        _sync: bool,
    ) -> Iterator[ScanResult]:
        """The pipeline behind :meth:`scan` and :meth:`scan_any`: each image gets one result per
        model, and ``combine`` turns them into the one that is yielded."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        name_iter = iter(names) if names is not None else None
        workers = self.decode_workers
        remaining = len(sources) if isinstance(sources, Sized) else None
        # Models that take the same input share one decode: {(size, preprocessing): [model index]}.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for m, model in enumerate(models):
            groups.setdefault((model.info.input_size, model.info.preprocessing), []).append(m)

        def result(model: LoadedModel, index: int, name: str, **kw: Any) -> ScanResult:
            info = model.info
            return ScanResult(source=name, domain=info.domain, model_version=info.model_version, index=index, **kw)

        def failure(model: LoadedModel, index: int, name: str, reason: str) -> ScanResult:
            info = model.info
            return ScanResult.failure(name, reason, info.domain, info.model_version, index)

        def answer(model: LoadedModel, index: int, name: str, probs: np.ndarray, score: Any,
                   labels: tuple[str, ...]) -> ScanResult:
            found = result(model, index, name, predictions=top_predictions(probs, labels, top_k))
            if score is not None:
                found.ood_score = float(score)
                found.ood_threshold = model.info.ood_threshold
                found.unknown = found.rejected and not accept_unknown
            return found

        def decode(model: LoadedModel, src: ImageSource) -> np.ndarray | str:
            """The model's input array for ``src``, or the reason it cannot be decoded."""
            try:
                return model.prepare(src)
            except ImageError as exc:
                return str(exc)
            except MemoryError:
                return "out of memory while decoding"
            except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure is one file's error
                return f"cannot decode image: {exc.__class__.__name__}: {exc}"

        def run_batch(first: int, batch: list[tuple[str, ImageSource]]) -> list[ScanResult]:
            """Decode ``batch`` once per input kind (a bad file becomes that file's error), then
            classify the rest with each model that takes that kind. Each image's result carries
            what each step spent on it: its own decode, an equal share of each batch run."""
            done: list[list[ScanResult | None]] = [[None] * len(models) for _ in batch]
            spent: list[dict[str, float]] = [{} for _ in batch]
            for members in groups.values():
                lead = models[members[0]]
                arrays: list[np.ndarray] = []
                decoded: list[int] = []
                for j, (name, src) in enumerate(batch):
                    started = time.perf_counter()
                    array = decode(lead, src)
                    spent[j][DECODE] = spent[j].get(DECODE, 0.0) + (time.perf_counter() - started) * 1000
                    if isinstance(array, str):
                        for m in members:
                            done[j][m] = failure(models[m], first + j, name, array)
                    else:
                        arrays.append(array)
                        decoded.append(j)
                if not arrays:
                    continue
                stacked = np.stack(arrays) if len(arrays) > 1 else arrays[0][None]
                for m in members:
                    batch_ms: dict[str, float] = {}
                    probs, scores, labels = models[m].predict_answers(stacked, batch_ms)
                    for row, j in enumerate(decoded):
                        done[j][m] = answer(models[m], first + j, batch[j][0], probs[row],
                                            None if scores is None else scores[row], labels)
                        for step, ms in batch_ms.items():
                            spent[j][step] = spent[j].get(step, 0.0) + ms / len(decoded)
            answers = [combine(per_model) for per_model in done]  # type: ignore[arg-type]  # all filled by now
            for answered, steps in zip(answers, spent):
                answered.timing_ms = steps
            return answers

        def next_size(submitted: int) -> int:
            if remaining is None:
                return batch_size
            left = remaining - submitted
            return max(1, min(batch_size, -(-left // workers)))

        if _sync:
            every = [(next(name_iter) if name_iter is not None else display_name(src), src) for src in sources]
            for start in range(0, len(every), batch_size):
                yield from run_batch(start, every[start:start + batch_size])
            return

        pool = self._executor()
        pending: deque[Future] = deque()
        window = 2 * workers  # batches in flight: every worker has the next one queued
        batch: list[tuple[str, ImageSource]] = []
        first = 0
        want = next_size(0)
        try:
            for index, src in enumerate(sources):
                name = next(name_iter) if name_iter is not None else display_name(src)
                batch.append((name, src))
                if len(batch) >= want:
                    pending.append(pool.submit(run_batch, first, batch))
                    first, batch = index + 1, []
                    want = next_size(first)
                    while len(pending) >= window:
                        yield from pending.popleft().result()
            if batch:
                pending.append(pool.submit(run_batch, first, batch))
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:  # the caller stopped early or a batch raised: drop the rest
                future.cancel()


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process-wide engine (one per process: CLI, server)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
