"""Writing scan results as they arrive: table, json, jsonl or csv.

Every format carries failures too: a record with ``status: "error"`` and the reason, so a
script reading the output sees exactly which files failed and why. Results are written as soon
as they are ready (the JSON array is streamed element by element).

A record's ``status`` is ``ok``, ``unknown`` (the model's open-set score is over its threshold:
``label``, ``confidence`` and ``sure`` are null, ``top`` keeps the model's best guesses) or
``error``. ``ood_score`` and ``ood_threshold`` say how far the image is from the domain (null for
models without an open-set score). Scans over every domain add ``alternatives``: the other
domains' answers, best first.

``text`` and ``text_match`` are what ``--read-text`` found (null when no text was read): the text
read from the photo and the domain's text cue it matched (:mod:`tagteller.text_cues`). Where that
cue overrode the image model, ``label`` is the cue's, ``confidence`` is null (the answer is not a
probability), ``sure`` is true and ``top`` keeps the image model's probabilities.

``timing_ms`` is what each step of the scan spent on the image, in milliseconds (``decode``,
``inference``, and where they ran ``taught_labels`` and ``text_reading``: ``ScanResult.timing_ms``).
JSON and JSON-lines records carry it; CSV and table output leave it out (their columns stay as they
were), as do the Parquet shards of ``--engine ray``. With a :class:`tagteller.prices.DealCheck`
(``--price``, the server) a record also carries the deal fields.

:func:`result_record` is the one place a result becomes a record: the CLI, the server and the Ray
actors all call it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tagteller.engine import ScanResult
from tagteller.errors import TagtellerError

if TYPE_CHECKING:
    from tagteller.prices import DealCheck

FORMATS = ("table", "json", "jsonl", "csv")
#: The format ``-o FILE`` implies when no ``--format`` is given (other extensions: table).
FORMAT_BY_EXTENSION = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "table"}
#: ``-o -``: write to standard output.
STDOUT = "-"


def resolve_output(output: str | os.PathLike[str] | None, fmt: str | None) -> tuple[Path | None, str]:
    """``(file or None for stdout, format)`` for ``-o``/``--format``: the one place both are
    decided. An explicit ``fmt`` wins; otherwise the file's extension says it (table for others).
    The file is checked before anything is scanned (:func:`check_output_path`)."""
    path = None if output is None or os.fspath(output) == STDOUT else Path(output)
    if fmt is None:
        fmt = FORMAT_BY_EXTENSION.get(path.suffix.lower(), "table") if path is not None else "table"
    if fmt not in FORMATS:
        raise TagtellerError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if path is not None:
        check_output_path(path)
    return path, fmt


def check_output_path(path: Path) -> None:
    """Raise a one-line :class:`TagtellerError` when ``path`` cannot be written as a file: it is a
    folder, a folder on its way is a file, or the nearest existing folder is not writable (missing
    folders are created when the results are written)."""
    if path.is_dir():
        raise TagtellerError(f"{path}: is a folder; give a file name, e.g. {path / 'results.json'}")
    if os.path.lexists(path) and not path.is_file():
        raise TagtellerError(f"{path}: exists and is not a regular file")
    for parent in path.parents:
        if parent.is_dir():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise TagtellerError(f"{path}: cannot write in folder {parent}: permission denied")
            return
        if os.path.lexists(parent):
            raise TagtellerError(f"{path}: {parent} is a file, not a folder")


#: What an ``unknown`` answer says (tables, the scanner page), for one domain or for all of them.
UNKNOWN_TEXT = "unknown: not like anything this domain knows"
UNKNOWN_ANY_TEXT = "unknown: not like anything any domain knows"


def _score(value: float | None) -> float | None:
    """A score for JSON: rounded; None when absent or not finite (JSON has no NaN)."""
    return round(value, 6) if value is not None and math.isfinite(value) else None


def result_record(result: ScanResult, low_confidence: float | Callable[[str], float] = 0.0,
                  extra: dict[str, Any] | None = None, deals: DealCheck | None = None) -> dict[str, Any]:
    """The plain-data form of one result, shared by every format, the HTTP API and the Ray shards.

    ``low_confidence`` is the domain's threshold for ``sure``, or a function of the domain name
    (scans over every domain). ``sure`` is false below it, and for an answer accepted although
    the model rejected the image (``--accept-unknown``). ``extra`` fields are added as they are;
    ``deals`` adds the deal fields of the record's answer (blocking: it reads price lists).
    """
    threshold_for = low_confidence if callable(low_confidence) else (lambda _domain: low_confidence)
    top = result.top if result.status == "ok" else None
    record: dict[str, Any] = {
        "file": result.source,
        "status": result.status,
        "label": top.label if top else None,
        "confidence": round(top.probability, 6) if top else None,
        "sure": (top.probability >= threshold_for(result.domain) and not result.rejected) if top else None,
        "top": [{"label": p.label, "probability": round(p.probability, 6)} for p in result.predictions],
        "error": result.error,
        "domain": result.domain,
        "model_version": result.model_version,
        "ood_score": _score(result.ood_score),
        "ood_threshold": _score(result.ood_threshold),
    }
    record["text"] = result.text
    record["text_match"] = result.text_match.as_record() if result.text_match is not None else None
    if top and result.text_match is not None and result.text_match.overrode:
        record.update(label=result.text_match.label, confidence=None, sure=True)
    if result.alternatives is not None:
        record["alternatives"] = [_alternative(r, threshold_for) for r in result.alternatives]
    record["timing_ms"] = {step: round(ms, 3) for step, ms in result.timing_ms.items()}
    if extra:
        record.update(extra)
    if deals is not None:
        record.update(deals.fields(result.domain, record))
    return record


def _alternative(result: ScanResult, threshold_for: Callable[[str], float]) -> dict[str, Any]:
    """One other domain's answer, for a record's ``alternatives``."""
    full = result_record(result, threshold_for)
    return {key: full[key] for key in ("domain", "status", "label", "confidence", "ood_score", "ood_threshold",
                                       "error")}


def describe_confidence(record: dict[str, Any]) -> str:
    """``"87%"``, or ``"not sure: 41%"`` below the domain's confidence threshold."""
    if record["confidence"] is None:
        match = record.get("text_match")
        return f"text: {match['read']}" if match and match["overrode"] else ""
    pct = f"{record['confidence'] * 100:.0f}%"
    return pct if record["sure"] else f"not sure: {pct}"


def describe_unknown(record: dict[str, Any]) -> str:
    """The sentence for an ``unknown`` record: for its domain, or for all of them."""
    return UNKNOWN_ANY_TEXT if "alternatives" in record else UNKNOWN_TEXT


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


class Writer:
    """Base: ``write(record)`` per result, then ``close()``."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()


class JsonWriter(Writer):
    """A JSON array written element by element."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(("[\n  " if self.count == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False))
        self.stream.flush()
        self.count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        super().close()


class CsvWriter(Writer):
    """One row per record; ``top`` as ``label:probability;...``, ``alternatives`` (an extra column
    of scans over every domain) as ``domain:status[:label:confidence];...``."""

    COLUMNS = ("file", "status", "label", "confidence", "sure", "top", "error", "domain", "model_version",
               "ood_score", "ood_threshold", "text", "text_match")

    def __init__(self, stream: IO[str], extra_columns: tuple[str, ...] = ()) -> None:
        super().__init__(stream)
        self.columns = self.COLUMNS + tuple(c for c in extra_columns if c not in self.COLUMNS)
        self.writer = csv.DictWriter(stream, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        self.writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        row = dict(record)
        row["top"] = ";".join(f"{p['label']}:{p['probability']:.4f}" for p in record["top"])
        row["error"] = record["error"] or ""
        row["label"] = record["label"] or ""
        row["confidence"] = "" if record["confidence"] is None else f"{record['confidence']:.4f}"
        row["sure"] = "" if record["sure"] is None else str(record["sure"]).lower()
        row["ood_score"] = "" if record["ood_score"] is None else f"{record['ood_score']:.6f}"
        row["ood_threshold"] = "" if record["ood_threshold"] is None else f"{record['ood_threshold']:.6f}"
        row["text"] = record.get("text") or ""
        match = record.get("text_match")
        row["text_match"] = (f"{match['label']}:{match['word']}:{match['similarity']:.4f}"
                             + (":overrode" if match["overrode"] else "")) if match else ""
        if "alternatives" in record:
            row["alternatives"] = ";".join(
                f"{a['domain']}:{a['status']}" + (f":{a['label']}:{a['confidence']:.4f}" if a["label"] else "")
                for a in record["alternatives"])
        self.writer.writerow(row)
        self.stream.flush()


class TableWriter(Writer):
    """Aligned rows printed as results arrive (a header first); with ``domain_column``, a DOMAIN
    column after the file (scans over every domain).

    Column widths come from the data, known before the first result: the names of the files to
    scan and the labels the models can answer. File names are shortened (``…`` + their end) only
    on a terminal too narrow for them; a file or a pipe gets them whole."""

    MIN_FILE_WIDTH = 24
    DEFAULT_FILE_WIDTH = 48  # when the names are not known beforehand

    def __init__(self, stream: IO[str], width: int | None = None, extra_columns: tuple[str, ...] = (),
                 domain_column: bool = False, names: Iterable[str] = (), labels: Iterable[str] = (),
                 domains: Iterable[str] = ()) -> None:
        super().__init__(stream)
        self.label_width = max([len("RESULT"), len("ERROR"), *(len(label) for label in labels)])
        self.domain_width = max([len("DOMAIN"), *(len(name) for name in domains)])
        names = list(names)
        self.shorten_to: int | None = None  # names longer than this are shortened (terminals only)
        if width is None:
            width = max([len("FILE"), *(len(name) for name in names)]) if names else self.DEFAULT_FILE_WIDTH
            columns = _terminal_columns(stream)
            if columns is not None:  # keep a row on one line: the file column gives way first
                rest = 2 + self.label_width + 2 + 14 + 2 + 24 + ((self.domain_width + 2) if domain_column else 0)
                width = min(width, max(self.MIN_FILE_WIDTH, columns - rest))
                self.shorten_to = width
        self.width = width
        self.extra_columns = extra_columns
        self.domain_column = domain_column
        self.header_done = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.header_done:
            extra = "".join(f"  {c}" for c in self.extra_columns)
            domain = f"{'DOMAIN':<{self.domain_width}}  " if self.domain_column else ""
            self.stream.write(f"{'FILE':<{self.width}}  {domain}{'RESULT':<{self.label_width}}  {'CONFIDENCE':<14}  "
                              f"OTHERS{extra}\n")
            self.header_done = True
        name = record["file"]
        if self.shorten_to is not None and len(name) > self.shorten_to:
            name = "…" + name[-(self.shorten_to - 1):]
        if self.domain_column:
            name = f"{name:<{self.width}}  {record['domain'] or '-':<{self.domain_width}}"
        if record["status"] == "error":
            line = f"{name:<{self.width}}  {'ERROR':<{self.label_width}}  {record['error']}"
        elif record["status"] == "unknown":
            guesses = ", ".join(f"{p['label']} {p['probability'] * 100:.0f}%" for p in record["top"])
            line = (f"{name:<{self.width}}  {describe_unknown(record)}  (score {_number(record['ood_score'])} "
                    f"over {_number(record['ood_threshold'])}; best guesses: {guesses})")
        else:
            others = ", ".join(f"{p['label']} {p['probability'] * 100:.0f}%" for p in record["top"]
                               if p["label"] != record["label"])  # a text cue's answer: all of the image's
            line = (f"{name:<{self.width}}  {record['label']:<{self.label_width}}  {describe_confidence(record):<14}  "
                    f"{others}")
            for column in self.extra_columns:
                if record.get(column):
                    line += f"  {record[column]}"
        if record.get("text") and record["status"] != "error":
            line += f"  read: {record['text']}"
        self.stream.write(line.rstrip() + "\n")
        self.stream.flush()


def _terminal_columns(stream: IO[str]) -> int | None:
    """The width of the terminal ``stream`` writes to; None for a file or a pipe."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size().columns


def make_writer(fmt: str, stream: IO[str], extra_columns: tuple[str, ...] = (), any_domain: bool = False,
                names: Iterable[str] = (), labels: Iterable[str] = (), domains: Iterable[str] = ()) -> Writer:
    """The writer for ``fmt``; ``any_domain``: records of a scan over every domain (a DOMAIN
    column in tables, an ``alternatives`` column in CSV). ``names``, ``labels`` and ``domains``
    (the files to scan, the labels and domains that may answer) size a table's columns."""
    if fmt == "json":
        return JsonWriter(stream)
    if fmt == "jsonl":
        return JsonlWriter(stream)
    if fmt == "csv":
        return CsvWriter(stream, extra_columns + (("alternatives",) if any_domain else ()))
    if fmt == "table":
        return TableWriter(stream, extra_columns=extra_columns, domain_column=any_domain, names=names,
                           labels=labels, domains=domains)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
