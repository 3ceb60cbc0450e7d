"""Result shards of a distributed scan: the record schema, atomic writing, and what a folder holds.

A shard is ``part-<run>-<number>.parquet`` (or ``.jsonl``) in the output folder. Its rows are the
CLI's JSON records (:func:`tagteller.output.result_record`: file, status, label, confidence,
sure, top, error, domain, model_version, ood_score, ood_threshold) plus ``size``, the number of
bytes scanned, which ``--resume`` matches together with the file name. Each shard is written under
a temporary name and renamed into place (:mod:`tagteller.atomic` for local folders, a rename on
the fsspec filesystem otherwise), so a shard is either whole or absent, and the shards already
written survive any interruption.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tagteller.errors import TagtellerError

FORMATS = ("parquet", "jsonl")
SHARD_PREFIX = "part-"

#: The records' columns, typed once, so that every shard of a job (and of its resumed runs) reads
#: back as one table.
SCHEMA = pa.schema([
    ("file", pa.string()),
    ("status", pa.string()),
    ("label", pa.string()),
    ("confidence", pa.float64()),
    ("sure", pa.bool_()),
    ("top", pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))),
    ("error", pa.string()),
    ("domain", pa.string()),
    ("model_version", pa.string()),
    ("ood_score", pa.float64()),
    ("ood_threshold", pa.float64()),
    ("size", pa.int64()),
])


def records_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records (with ``size``) as a table of :data:`SCHEMA`."""
    return pa.Table.from_pylist(records, schema=SCHEMA)


def output_filesystem(folder: str) -> tuple[Any, str]:
    """fsspec's filesystem for the output folder and the folder's path in it."""
    from tagteller.scale.inputs import local_path, remote_filesystem

    if "://" in folder and not folder.startswith("file://"):
        return remote_filesystem(folder)
    import fsspec

    return fsspec.filesystem("file"), os.path.abspath(local_path(folder))


def is_shard(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(SHARD_PREFIX) and base.endswith(tuple(f".{fmt}" for fmt in FORMATS))


def list_shards(fs: Any, folder: str) -> list[str]:
    """The shards in ``folder`` (sorted); none when it does not exist."""
    if not fs.exists(folder):
        return []
    if not fs.isdir(folder):
        raise TagtellerError(f"{folder}: --output must be a folder for --engine ray, and this is a file")
    return sorted(p for p in fs.ls(folder, detail=False) if is_shard(p))


def read_shard(fs: Any, path: str, columns: list[str] | None = None) -> pa.Table:
    """One shard as a table (``columns`` only, when given); a shard that cannot be read is an
    error naming it."""
    try:
        with fs.open(path, "rb") as fh:
            if path.endswith(".parquet"):
                return pq.read_table(fh, columns=columns)
            table = records_table([json.loads(line) for line in fh.read().decode("utf-8").splitlines() if line])
            return table.select(columns) if columns else table
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise TagtellerError(f"{path}: cannot read this result shard ({exc})") from None


def done_inputs(fs: Any, folder: str) -> dict[str, tuple[int | None, str]]:
    """``{file: (size, status)}`` of every record already in ``folder``'s shards (errors
    included: a file that failed is done too; an argument that matched nothing has no size)."""
    done: dict[str, tuple[int | None, str]] = {}
    for path in list_shards(fs, folder):
        table = read_shard(fs, path, ["file", "size", "status"])
        for name, size, status in zip(*(table.column(c).to_pylist() for c in ("file", "size", "status"))):
            done[name] = (size, status)
    return done


class ShardWriter:
    """Buffers result tables and writes them out as shards of this run, each atomically."""

    def __init__(self, fs: Any, folder: str, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown shard format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.fs, self.folder, self.fmt = fs, folder, fmt
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.run = f"{stamp}-{uuid.uuid4().hex[:6]}"
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.written: list[str] = []
        self.rows_written = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows

    def flush(self) -> str | None:
        """Write what is buffered as the next shard; return its path (None when nothing was)."""
        if not self.pending_rows:
            return None
        table = pa.concat_tables(self.pending).cast(SCHEMA)
        name = f"{SHARD_PREFIX}{self.run}-{len(self.written):05d}.{self.fmt}"
        path = f"{self.folder.rstrip('/')}/{name}"
        data = self._encode(table)
        if self._is_local():
            from tagteller.atomic import atomic_write_bytes

            atomic_write_bytes(path, data)
        else:
            self.fs.makedirs(self.folder, exist_ok=True)
            temp = f"{self.folder.rstrip('/')}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open(temp, "wb") as fh:
                fh.write(data)
            self.fs.mv(temp, path)
        self.written.append(path)
        self.rows_written += table.num_rows
        self.pending, self.pending_rows = [], 0
        return path

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in ((protocol,) if isinstance(protocol, str) else protocol)

    def _encode(self, table: pa.Table) -> bytes:
        if self.fmt == "parquet":
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            return sink.getvalue().to_pybytes()
        lines = (json.dumps(record, ensure_ascii=False) for record in table.to_pylist())
        return "".join(line + "\n" for line in lines).encode("utf-8")
