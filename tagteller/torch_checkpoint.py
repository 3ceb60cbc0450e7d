"""Read a PyTorch checkpoint in torch's *legacy* (pre-1.6, non-zip) format with pickle and numpy,
without torch.

The format is what ``torch.save(obj, f, _use_new_zipfile_serialization=False)`` writes
(``torch/serialization.py``, ``_legacy_save``), one stream after another in the same file:

1. a pickled magic number (``0x1950a86a20f9469cfc6c``), 2. a pickled protocol version (1001),
3. a pickled dict of system info (``little_endian``, type sizes),
4. the object itself, pickled with *persistent ids*: each tensor is reduced to
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` and
   each storage is the persistent id ``("storage", torch.FloatStorage, key, location, numel)``,
5. a pickled list of the storage keys, in the order their bytes follow,
6. for each key: a little-endian int64 element count, then the raw little-endian elements.

:func:`read_legacy_checkpoint` returns the object with every tensor as a numpy array (a state
dict becomes a ``dict`` of arrays). Only the classes such a checkpoint needs are allowed through
the unpickler; anything else is refused, so loading a file never runs code from it.
:func:`write_legacy_checkpoint` writes the same format from numpy arrays (used by the tests to
check the reader byte for byte, and handy for making small fixtures).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tagteller.errors import TagtellerError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage class name -> numpy dtype (little-endian).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(TagtellerError):
    """A file that is not a readable legacy torch checkpoint."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass
class _TensorRef:
    """A tensor waiting for its storage's bytes: ``_rebuild_tensor_v2``'s arguments."""

    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: tuple[str, _StorageType], offset: int, size: Any, stride: Any,
                       *_ignored: Any) -> _TensorRef:
    key, _ = storage
    return _TensorRef(key, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict needs: storages, the tensor rebuilder, OrderedDict."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, encoding="latin1")
        self.storages: dict[str, _StorageType] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise CheckpointError(f"refusing to load {module}.{name} from a checkpoint (only tensors and dicts are read)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage {key}: unknown storage type {storage_type!r:.60}")
        self.storages[key] = storage_type
        return (key, storage_type)


def _materialise(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        flat = arrays[obj.key]
        if not obj.size:
            return flat[obj.offset:obj.offset + 1].reshape(()).copy()
        itemsize = flat.dtype.itemsize
        last = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride))
        if min(obj.size) > 0 and last >= len(flat):
            raise CheckpointError(f"storage {obj.key}: a tensor of size {obj.size} reaches past its {len(flat)} elements")
        view = np.lib.stride_tricks.as_strided(flat[obj.offset:], shape=obj.size,
                                               strides=tuple(s * itemsize for s in obj.stride), writeable=False)
        return np.array(view)
    if isinstance(obj, Mapping):
        return {k: _materialise(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v, arrays) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, arrays) for v in obj)
    return obj


def read_legacy_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object saved in ``path``, with every tensor as a numpy array (see the module docstring)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _read(f, str(path))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None


def _read(f: IO[bytes], where: str) -> Any:
    if f.read(2)[:1] == b"PK":
        raise CheckpointError(f"{where}: a zip-format torch checkpoint; only the legacy format is read here")
    f.seek(0)
    try:
        magic = pickle.load(f)
        if magic != MAGIC_NUMBER:
            raise CheckpointError(f"{where}: not a legacy torch checkpoint (bad magic number)")
        protocol = pickle.load(f)
        if protocol != PROTOCOL_VERSION:
            raise CheckpointError(f"{where}: checkpoint protocol {protocol!r} is not supported")
        sys_info = pickle.load(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{where}: a big-endian checkpoint is not supported")
        unpickler = _Unpickler(f)
        obj = unpickler.load()
        keys = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{where}: not a legacy torch checkpoint ({exc.__class__.__name__}: {exc})") from None
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        storage_type = unpickler.storages.get(key)
        if storage_type is None:
            raise CheckpointError(f"{where}: storage {key} is listed but no tensor uses it")
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{where}: truncated at storage {key}")
        (count,) = struct.unpack("<q", head)
        nbytes = count * storage_type.dtype.itemsize
        raw = f.read(nbytes)
        if count < 0 or len(raw) != nbytes:
            raise CheckpointError(f"{where}: truncated at storage {key} ({len(raw)} of {nbytes} bytes)")
        arrays[key] = np.frombuffer(raw, dtype=storage_type.dtype)
    return _materialise(obj, arrays)


# -- writing (fixtures and round-trip tests) ---------------------------------------------------

_STORAGE_OF_DTYPE = {dtype: name for name, dtype in STORAGE_DTYPES.items()}


@dataclass(frozen=True)
class _Global:
    """A reference to ``module.name``, written as a pickle GLOBAL without importing it."""

    module: str
    name: str


def _emit(obj: Any, out: io.BytesIO) -> None:
    """Pickle protocol 2 opcodes for the few shapes a legacy state dict is made of."""
    if isinstance(obj, _Global):
        out.write(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
    elif isinstance(obj, tuple):
        out.write(pickle.MARK)
        for item in obj:
            _emit(item, out)
        out.write(pickle.TUPLE)
    elif isinstance(obj, dict):  # written as collections.OrderedDict(), then SETITEMS
        _emit(_Global("collections", "OrderedDict"), out)
        out.write(pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.MARK)
        for key, value in obj.items():
            _emit(key, out)
            _emit(value, out)
        out.write(pickle.SETITEMS)
    else:  # a primitive: its own opcodes, without the protocol header and STOP
        out.write(pickle.dumps(obj, protocol=2)[2:-1])


def write_legacy_checkpoint(state: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> None:
    """Write a state dict of numpy arrays as a legacy torch checkpoint (see the module docstring)."""
    from tagteller.atomic import atomic_write_bytes

    buf = io.BytesIO()
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info):
        pickle.dump(header, buf, protocol=2)
    arrays: dict[str, np.ndarray] = {}
    body = io.BytesIO()
    body.write(pickle.PROTO + bytes([2]))
    body.write(_emit_marker_dict_start())
    for i, (name, value) in enumerate(state.items()):
        array = np.asarray(value)
        array = np.ascontiguousarray(array) if array.ndim else array
        little = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if np.dtype(little) not in _STORAGE_OF_DTYPE:
            raise TypeError(f"{name}: dtype {array.dtype} has no torch storage type")
        array = array.astype(little, copy=False)
        key = str(i)
        arrays[key] = array
        stride = tuple(int(np.prod(array.shape[d + 1:], dtype=np.int64)) for d in range(array.ndim))
        _emit(name, body)
        _emit(_Global("torch._utils", "_rebuild_tensor_v2"), body)
        body.write(pickle.MARK)
        _emit(("storage", _Global("torch", _STORAGE_OF_DTYPE[np.dtype(little)]), key, "cpu", int(array.size)), body)
        body.write(pickle.BINPERSID)
        args: tuple[object, ...] = (0, tuple(int(d) for d in array.shape), stride, False, {})
        for arg in args:
            _emit(arg, body)
        body.write(pickle.TUPLE + pickle.REDUCE)
    body.write(pickle.SETITEMS + pickle.STOP)
    buf.write(body.getvalue())
    pickle.dump(list(arrays), buf, protocol=2)
    for array in arrays.values():
        buf.write(struct.pack("<q", array.size))
        buf.write(array.tobytes())
    atomic_write_bytes(path, buf.getvalue())


def _emit_marker_dict_start() -> bytes:
    out = io.BytesIO()
    _emit(_Global("collections", "OrderedDict"), out)
    out.write(pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.MARK)
    return out.getvalue()
