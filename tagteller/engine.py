"""The one inference engine every domain shares: onnxruntime sessions and a decode pipeline.

- :meth:`Engine.load` opens a model file once (cached by path, size and mtime), checks its
  metadata against the graph, and returns a :class:`LoadedModel`.
- :meth:`Engine.scan` streams :class:`ScanResult` objects, in input order, for any iterable of
  images: a thread pool decodes ahead (Pillow releases the GIL while decoding) while the current
  batch runs in onnxruntime, so decoding and inference overlap. A file that fails to decode
  becomes a result with ``error`` set; the rest of the batch carries on.

Only numpy, Pillow and onnxruntime are imported here.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.errors import ImageError, ModelError
from tagteller.imaging import ImageSource, prepare
from tagteller.modelfile import ModelInfo, parse_metadata


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


class Engine:
    """Shared onnxruntime sessions plus a decode thread pool; safe to share across threads."""

    def __init__(self, intra_threads: int | None = None, decode_workers: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.intra_threads = intra_threads or cores
        self.decode_workers = decode_workers or max(1, cores)
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
                self._pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="tagteller-decode")
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
        """Yield one :class:`ScanResult` per source, in order, as soon as each is ready."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        info = model.info
        name_iter = iter(names) if names is not None else None

        def decode(src: ImageSource) -> np.ndarray:
            return model.prepare(src)

        def result(index: int, name: str, **kw: Any) -> ScanResult:
            return ScanResult(source=name, domain=info.domain, model_version=info.model_version, index=index, **kw)

        pending: deque[tuple[int, str, Future | np.ndarray | Exception]] = deque()
        window = max(2 * batch_size, 2 * self.decode_workers)
        pool = None if _sync else self._executor()

        def submit(index: int, src: ImageSource) -> None:
            name = next(name_iter) if name_iter is not None else display_name(src)
            if pool is None:
                try:
                    pending.append((index, name, decode(src)))
                except Exception as exc:  # noqa: BLE001 - reported per file below
                    pending.append((index, name, exc))
            else:
                pending.append((index, name, pool.submit(decode, src)))

        def flush(count: int) -> Iterator[ScanResult]:
            """Take up to ``count`` decoded inputs from the front, run them, yield results."""
            ready: list[tuple[int, str, np.ndarray]] = []
            done: list[ScanResult] = []
            while pending and len(ready) < count:
                index, name, item = pending.popleft()
                try:
                    arr = item.result() if isinstance(item, Future) else item
                    if isinstance(arr, Exception):
                        raise arr
                    ready.append((index, name, arr))
                except ImageError as exc:
                    done.append(result(index, name, error=str(exc)))
                except MemoryError:
                    done.append(result(index, name, error="out of memory while decoding"))
                except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure is one file's error
                    done.append(result(index, name, error=f"cannot decode image: {exc.__class__.__name__}: {exc}"))
            if ready:
                probs = model.predict(np.stack([a for _, _, a in ready]))
                for (index, name, _), p in zip(ready, probs):
                    done.append(result(index, name, predictions=top_predictions(p, info.labels, top_k)))
            done.sort(key=lambda r: r.index)
            yield from done

        for index, src in enumerate(sources):
            submit(index, src)
            if len(pending) >= window:
                yield from flush(batch_size)
        while pending:
            yield from flush(batch_size)


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process-wide engine (one per process: CLI, server)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
