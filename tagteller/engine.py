"""The one inference engine every domain shares: onnxruntime sessions and a decode pipeline.

- :meth:`Engine.load` opens a model file once (cached by path, size and mtime), checks its
  metadata against the graph, and returns a :class:`LoadedModel`.
- :meth:`Engine.scan` streams :class:`ScanResult` objects, in input order, for any iterable of
  images. One worker thread per core takes a batch at a time, decodes it (Pillow releases the GIL
  while decoding) and runs it through onnxruntime (which releases it too), so decoding and
  inference overlap across workers and no core waits for another stage. A file that fails to
  decode becomes a result with ``error`` set; the rest of the batch carries on.

How this was tuned (decode workers against intra-op threads, batch size, JPEG draft size) and the
throughput it reaches against the machine's bound are in ``benchmarks/`` and BENCHMARKS.md.

Only numpy, Pillow and onnxruntime are imported here.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.errors import ImageError, ModelError
from tagteller.imaging import ImageSource, prepare
from tagteller.modelfile import ModelInfo, parse_metadata

#: onnxruntime intra-op threads per run (see :class:`Engine`).
DEFAULT_INTRA_THREADS = 1


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


@dataclass
class ScanResult:
    """The outcome for one input: top-k predictions, or an error with its reason."""

    source: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    domain: str = ""
    model_version: str = ""
    index: int = 0  # position in the input stream

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top(self) -> Prediction | None:
        return self.predictions[0] if self.predictions else None


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
        self.output_name = outputs[0].name
        self._check_shapes(inputs[0].shape, outputs[0].shape)
        self._lock = threading.Lock()

    def _check_shapes(self, in_shape: list, out_shape: list) -> None:
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
        if not all(isinstance(d, int) for d in (*in_shape[1:], out_shape[1])):
            # Symbolic sizes say nothing: run one blank image now, so that a model that does not fit
            # its metadata fails here (and in `tagteller info`), not halfway through a batch.
            self.predict(np.zeros((1, info.height, info.width, info.channels), np.float32))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, classes)`` for a float32 batch ``(N, H, W, C)`` in [0, 255]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            out = self.session.run([self.output_name], {self.input_name: batch})[0]
        except MemoryError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for graphs that fail
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelError(f"{self.path}: the model failed on a {batch.shape} input ({first[:200]})") from None
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != len(self.info.labels):
            raise ModelError(
                f"{self.path}: {len(self.info.labels)} labels in metadata but the model outputs shape {out.shape}"
            )
        if self.info.output == "logits":
            out = softmax(out)
        return out

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
        import onnxruntime as ort

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
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

    def classify(self, model: LoadedModel, source: ImageSource, top_k: int = 3) -> ScanResult:
        """Scan one image synchronously, in the calling thread (the server uses this)."""
        return next(self.scan(model, [source], top_k=top_k, batch_size=1, _sync=True))

    def scan(
        self,
        model: LoadedModel,
        sources: Iterable[ImageSource],
        top_k: int = 3,
        batch_size: int = 16,
        names: Iterable[str] | None = None,
        _sync: bool = False,
    ) -> Iterator[ScanResult]:
        """Yield one :class:`ScanResult` per source, in order, as soon as each is ready.

        Sources are cut into batches of at most ``batch_size``; each batch is one task for a
        worker, which decodes its images and runs the ones that decoded through the model, so
        every core is busy with whichever work is ready and no worker waits on another. When the
        number of sources is known (a list), batches shrink towards the end (never below one
        image) so that the last ones finish together instead of leaving a core idle.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        info = model.info
        labels = info.labels
        name_iter = iter(names) if names is not None else None
        workers = self.decode_workers
        remaining = len(sources) if isinstance(sources, Sized) else None

        def result(index: int, name: str, **kw: Any) -> ScanResult:
            return ScanResult(source=name, domain=info.domain, model_version=info.model_version, index=index, **kw)

        def run_batch(first: int, batch: list[tuple[str, ImageSource]]) -> list[ScanResult]:
            """Decode ``batch`` (a bad file becomes that file's error), then classify the rest."""
            done: list[ScanResult | None] = [None] * len(batch)
            arrays: list[np.ndarray] = []
            decoded: list[int] = []
            for j, (name, src) in enumerate(batch):
                try:
                    arrays.append(model.prepare(src))
                    decoded.append(j)
                except ImageError as exc:
                    done[j] = result(first + j, name, error=str(exc))
                except MemoryError:
                    done[j] = result(first + j, name, error="out of memory while decoding")
                except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure is one file's error
                    done[j] = result(first + j, name, error=f"cannot decode image: {exc.__class__.__name__}: {exc}")
            if arrays:
                probs = model.predict(np.stack(arrays) if len(arrays) > 1 else arrays[0][None])
                for j, p in zip(decoded, probs):
                    done[j] = result(first + j, batch[j][0], predictions=top_predictions(p, labels, top_k))
            return done  # type: ignore[return-value] - every slot is filled above

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
