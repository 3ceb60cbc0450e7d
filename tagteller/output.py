"""Writing scan results as they arrive: table, json, jsonl or csv.

Every format carries failures too: a record with ``status: "error"`` and the reason, so a
script reading the output sees exactly which files failed and why. Results are written as soon
as they are ready (the JSON array is streamed element by element).
"""

from __future__ import annotations

import csv
import json
from typing import IO, Any

from tagteller.engine import ScanResult

FORMATS = ("table", "json", "jsonl", "csv")


def result_record(result: ScanResult, low_confidence: float = 0.0, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plain-data form of one result, shared by every format and the HTTP API."""
    top = result.top
    record: dict[str, Any] = {
        "file": result.source,
        "status": "ok" if result.ok else "error",
        "label": top.label if top else None,
        "confidence": round(top.probability, 6) if top else None,
        "sure": (top.probability >= low_confidence) if top else None,
        "top": [{"label": p.label, "probability": round(p.probability, 6)} for p in result.predictions],
        "error": result.error,
        "domain": result.domain,
        "model_version": result.model_version,
    }
    if extra:
        record.update(extra)
    return record


def describe_confidence(record: dict[str, Any]) -> str:
    """``"87%"``, or ``"not sure: 41%"`` below the domain's confidence threshold."""
    if record["confidence"] is None:
        return ""
    pct = f"{record['confidence'] * 100:.0f}%"
    return pct if record["sure"] else f"not sure: {pct}"


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
    COLUMNS = ("file", "status", "label", "confidence", "sure", "top", "error", "domain", "model_version")

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
        self.writer.writerow(row)
        self.stream.flush()


class TableWriter(Writer):
    """Aligned rows printed as results arrive (a header first)."""

    def __init__(self, stream: IO[str], width: int = 48, extra_columns: tuple[str, ...] = ()) -> None:
        super().__init__(stream)
        self.width = width
        self.extra_columns = extra_columns
        self.header_done = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.header_done:
            extra = "".join(f"  {c}" for c in self.extra_columns)
            self.stream.write(f"{'FILE':<{self.width}}  {'RESULT':<24}  {'CONFIDENCE':<14}  OTHERS{extra}\n")
            self.header_done = True
        name = record["file"]
        if len(name) > self.width:
            name = "…" + name[-(self.width - 1):]
        if record["status"] == "error":
            line = f"{name:<{self.width}}  {'ERROR':<24}  {record['error']}"
        else:
            others = ", ".join(f"{p['label']} {p['probability'] * 100:.0f}%" for p in record["top"][1:])
            line = f"{name:<{self.width}}  {record['label']:<24}  {describe_confidence(record):<14}  {others}"
            for column in self.extra_columns:
                if record.get(column):
                    line += f"  {record[column]}"
        self.stream.write(line.rstrip() + "\n")
        self.stream.flush()


def make_writer(fmt: str, stream: IO[str], extra_columns: tuple[str, ...] = ()) -> Writer:
    if fmt == "json":
        return JsonWriter(stream)
    if fmt == "jsonl":
        return JsonlWriter(stream)
    if fmt == "csv":
        return CsvWriter(stream, extra_columns)
    if fmt == "table":
        return TableWriter(stream, extra_columns=extra_columns)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
