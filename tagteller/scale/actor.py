"""The Ray actor of a distributed scan: opens the model once and classifies batches of bytes.

Each batch holds the images' bytes (as Ray read them) and their names. The actor hands them to
:meth:`tagteller.engine.Engine.scan`, the in-process scan's own decode + predict code, and turns
every result into the CLI's record with :func:`tagteller.output.result_record`, so a distributed
scan answers exactly what ``tagteller scan`` answers for the same file. A file that does not
decode is that file's error row; the batch carries on.

The model travels as bytes through Ray's object store (the driver reads the file once; the
reference is wrapped in a list so that Ray hands it over as a reference), so workers on other machines need
tagteller installed but not the model file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
import pyarrow as pa
import ray

from tagteller.engine import Engine
from tagteller.output import result_record
from tagteller.scale.shards import records_table


class ScanActor:
    """One model, opened once per actor; called with a ``{"name", "bytes"}`` Arrow batch, returns
    the records as an Arrow table of :data:`tagteller.scale.shards.SCHEMA`."""

    def __init__(self, model_ref: list, model_name: str, top_k: int, batch_size: int,
                 accept_unknown: bool, low_confidence: float) -> None:
        # One decode worker and one onnxruntime thread: Ray gives each actor one CPU, and runs
        # as many actors as there are CPUs.
        self.engine = Engine(intra_threads=1, decode_workers=1)
        with tempfile.TemporaryDirectory(prefix="tagteller-actor-") as folder:
            # The engine opens models by path (and holds the session, not the file).
            path = os.path.join(folder, os.path.basename(model_name) or "model.onnx")
            with open(path, "wb") as fh:
                fh.write(ray.get(model_ref[0]))
            self.model = self.engine.load(path)
        self.model.path = Path(model_name)  # errors name the model file the user gave, not the copy
        self.top_k, self.batch_size = top_k, batch_size
        self.accept_unknown, self.low_confidence = accept_unknown, low_confidence

    def __call__(self, batch: pa.Table) -> pa.Table:
        names = batch.column("name").to_pylist()
        data = batch.column("bytes").to_pylist()
        results = self.engine.scan(self.model, data, top_k=self.top_k, batch_size=self.batch_size, names=names,
                                   accept_unknown=self.accept_unknown)
        records = [result_record(r, self.low_confidence, extra={"size": len(data[r.index])}) for r in results]
        return records_table(records)
