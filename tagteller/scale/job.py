"""Running a distributed scan: connect to Ray, build the Ray Data pipeline, stream it into shards.

The pipeline is Ray Data's batch-inference pattern: ``read_binary_files`` (one read per
filesystem, unioned) -> ``map_batches(ScanActor)`` over a fixed pool of actors -> the driver,
which iterates the records and writes them as shards (:class:`~tagteller.scale.shards.ShardWriter`)
every ``shard_rows`` rows or ``shard_seconds`` seconds, whichever comes first. Records are small
(a few hundred bytes an image), so the driver keeps up with any realistic pool, and writing from
one place makes every shard atomic and the progress and summary exact.

Reads ask Ray for no CPU: they are I/O, and the actors hold every CPU (one each), so reads that
reserved a CPU would wait for ever behind them. Their concurrency is bounded instead (as many as
there are actors, at least 2), or Ray would start a worker process for every block at once.

:func:`prepare` lists the inputs and what the output folder already holds (``resume``); the
:class:`ScanJob` it returns yields each result table as it arrives. Stopping the iteration early
(Ctrl-C, or a consumer that breaks out) still writes every record already received.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tagteller.engine import ScanResult, available_cores
from tagteller.errors import TagtellerError
from tagteller.output import result_record
from tagteller.scale.inputs import LOCAL, InputFile, list_inputs
from tagteller.scale.shards import ShardWriter, done_inputs, list_shards, output_filesystem, records_table
from tagteller.sources import InputProblem

#: Files per read block, and so per actor call (each call takes one block whole); the engine cuts
#: each into its own batches of ``batch_size``. Small blocks keep results flowing (and shards,
#: progress and resume fine-grained); the per-call cost of Ray is paid once per block.
FILES_PER_CALL = 32
#: At most this many read tasks (past FILES_PER_CALL * MAX_READ_BLOCKS files, blocks grow).
MAX_READ_BLOCKS = 20_000


@dataclass
class ScanPlan:
    """Everything a distributed scan needs to know."""

    sources: list[str]
    output: str
    model_path: Path
    domain: str
    model_version: str
    low_confidence: float
    fmt: str = "parquet"
    address: str | None = None
    actors: int | None = None
    top_k: int = 3
    batch_size: int = 16
    accept_unknown: bool = False
    resume: bool = False
    shard_rows: int = 10_000
    shard_seconds: float = 60.0


@dataclass
class ScanSummary:
    """What a run did; ``failed`` counts this run's error rows and the skipped ones that failed
    before."""

    inputs: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    scanned: int = 0
    failed: int = 0
    seconds: float = 0.0
    labels: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    shards: list[str] = field(default_factory=list)

    @property
    def any_failed(self) -> bool:
        return bool(self.failed or self.skipped_failed)

    @property
    def rate(self) -> float:
        return self.scanned / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def ray_runtime(address: str | None) -> Iterator[dict[str, float]]:
    """Ray, connected: to ``address`` (``auto``, ``ray://host:10001``) or ``$RAY_ADDRESS`` when
    given, else a local runtime with this machine's cores. A runtime that is already up (a caller's) is used as it
    is and left running. Yields the cluster's resources."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable, as `ray job submit` sets it
    started = False
    if not ray.is_initialized():
        quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=available_cores(), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            raise TagtellerError(f"cannot connect to {where}: {str(exc).strip().splitlines()[0]}") from None
        started = True
    _quiet_ray_data()
    try:
        yield ray.cluster_resources()
    finally:
        if started:
            ray.shutdown()


def _quiet_ray_data() -> None:
    """tagteller draws its own progress bar and summary: Ray Data's bars and INFO lines off."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # A task that fails for good is reported by the CLI in one line: Ray Data's own report (an
    # abbreviated traceback over several lines) would only repeat it.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def prepare(plan: ScanPlan) -> ScanJob:
    """List the inputs, and what the output folder already holds: with ``resume``, the files
    recorded there (same name and size) are skipped; without it, a folder that already holds
    shards is refused rather than mixed with a new run."""
    fs, folder = output_filesystem(plan.output)
    existing = list_shards(fs, folder)
    if existing and not plan.resume:
        raise TagtellerError(f"{plan.output}: already holds {len(existing)} result shard(s); pass --resume to "
                             "carry on with this job, or choose an empty --output folder")
    files, problems, filesystems = list_inputs(plan.sources)
    done = done_inputs(fs, folder) if existing else {}
    todo = [f for f in files if done.get(f.name, (None, ""))[0] != f.size]
    skipped = [f for f in files if done.get(f.name, (None, ""))[0] == f.size]
    new_problems = [p for p in problems if p.source not in done]
    failed_before = {name for name, (_size, status) in done.items() if status == "error"}
    return ScanJob(plan, fs, folder, todo, skipped, problems, new_problems, filesystems, failed_before)


class ScanJob:
    """A prepared scan: ``todo`` files to send to Ray, ``skipped`` ones already done, the
    arguments that named nothing (``problems``; ``new_problems``: those not yet recorded)."""

    def __init__(self, plan: ScanPlan, fs: Any, folder: str, todo: list[InputFile], skipped: list[InputFile],
                 problems: list[InputProblem], new_problems: list[InputProblem], filesystems: dict[str, Any],
                 failed_before: set[str]) -> None:
        self.plan, self.fs, self.folder = plan, fs, folder
        self.todo, self.skipped, self.problems, self.new_problems = todo, skipped, problems, new_problems
        self.filesystems = filesystems
        self.summary = ScanSummary(inputs=len(todo) + len(skipped) + len(problems), skipped=len(skipped),
                                   skipped_failed=sum(f.name in failed_before for f in skipped))

    def _error_table(self, failures: list[tuple[str, str, int | None]]) -> pa.Table:
        """Error records for ``(name, reason, size)``, as the engine would make them (``size``:
        the listed size, so that ``--resume`` knows the file as done; None for an argument)."""
        plan = self.plan
        return records_table([
            result_record(ScanResult.failure(name, reason, plan.domain, plan.model_version), plan.low_confidence,
                          extra={"size": size})
            for name, reason, size in failures])

    def problem_table(self) -> pa.Table:
        return self._error_table([(p.source, p.reason, None) for p in self.new_problems])

    def results(self) -> Iterator[pa.Table]:
        """Run the scan (Ray must be up: :func:`ray_runtime`), yielding each table of records
        once it is buffered for writing. However the iteration ends, what was received is written."""
        plan = self.plan
        writer = ShardWriter(self.fs, self.folder, plan.fmt)
        started = time.perf_counter()
        last_flush = started
        try:
            # Arguments that named nothing are failures of this run even when already recorded.
            self.summary.failed += len(self.problems)
            if self.new_problems:
                writer.add(self.problem_table())
            if self.todo:
                received: set[str] = set()
                for table in self._dataset().iter_batches(batch_size=None, batch_format="pyarrow"):
                    received.update(table.column("file").to_pylist())
                    self._count(table)
                    writer.add(table)
                    now = time.perf_counter()
                    if writer.pending_rows >= plan.shard_rows or now - last_flush >= plan.shard_seconds:
                        writer.flush()
                        last_flush = now
                    yield table
                # Files that vanished between the listing and Ray's read are skipped by Ray
                # (ignore_missing_paths): each gets its error row here.
                gone = self._error_table([(f.name, "file not found when it was read (deleted after the listing?)",
                                           f.size) for f in self.todo if f.name not in received])
                if gone.num_rows:
                    self._count(gone)
                    writer.add(gone)
                    yield gone
        finally:
            writer.flush()
            self.summary.seconds = time.perf_counter() - started
            self.summary.shards = list(writer.written)

    def _count(self, table: pa.Table) -> None:
        summary = self.summary
        statuses = table.column("status").to_pylist()
        summary.scanned += len(statuses)
        summary.statuses.update(statuses)
        summary.failed += statuses.count("error")
        summary.labels.update(label for label, status in zip(table.column("label").to_pylist(), statuses)
                              if status == "ok")

    def actor_count(self) -> int:
        import ray

        if self.plan.actors:
            return self.plan.actors
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _dataset(self) -> Any:
        """read_binary_files per filesystem (unioned) -> a name column -> the actor pool."""
        import ray.data
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        from tagteller.scale.actor import ScanActor

        plan = self.plan
        actors = self.actor_count()
        groups: dict[str, list[InputFile]] = {}
        for item in self.todo:
            groups.setdefault(item.protocol, []).append(item)
        parts = []
        for protocol, items in groups.items():
            fs = self.filesystems.get(protocol)
            # Enough blocks for every actor to have work, at most FILES_PER_CALL files each.
            blocks = min(len(items), MAX_READ_BLOCKS, max(2 * actors, math.ceil(len(items) / FILES_PER_CALL)))
            read = ray.data.read_binary_files(
                [item.path for item in items], include_paths=True, num_cpus=0, override_num_blocks=blocks,
                ignore_missing_paths=True,
                concurrency=max(2, actors),  # reads take no CPU: bound them, or Ray starts a worker per block
                filesystem=None if protocol == LOCAL else PyFileSystem(FSSpecHandler(fs)))
            parts.append(read.map_batches(_add_names, fn_kwargs={"fs": fs}, batch_format="pyarrow", num_cpus=0,
                                          batch_size=None))
        dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        # The model goes into Ray's object store once; each actor fetches it from there.
        self._model_ref = ray.put(Path(plan.model_path).read_bytes())
        return dataset.map_batches(
            ScanActor,
            fn_constructor_kwargs=dict(model_ref=[self._model_ref], model_name=str(plan.model_path),
                                       top_k=plan.top_k, batch_size=plan.batch_size,
                                       accept_unknown=plan.accept_unknown, low_confidence=plan.low_confidence),
            batch_size=None, batch_format="pyarrow", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=actors))


def _add_names(batch: pa.Table, fs: Any) -> pa.Table:
    """The records' ``name`` for each file Ray read: its local path, or its URL."""
    paths = batch.column("path").to_pylist()
    names = paths if fs is None else [fs.unstrip_protocol(p) for p in paths]
    return pa.table({"name": pa.array(names, pa.string()), "bytes": batch.column("bytes")})
