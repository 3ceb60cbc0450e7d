"""The one-line summary of a scan written to a file (``tagteller scan -o FILE``), for stderr:
how many images, how many failed or were unknown, the answers by label, the speed, and what each
step took per image (the records' ``timing_ms``, measured by the engine and the text reader):

    results.json: 120 images in 3.2 s (37.5 images/s); 2 failed, 3 unknown; nike 50, adidas 40, converse 25; per image: decode 21.3 ms, inference 30.1 ms

The elapsed time and images/s are the scan's wall clock: the workers decode and classify side by
side, so the per-image steps add up to more than the wall time on several cores.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any


class ScanSummary:
    """Counts records as they are written; :meth:`line` says it all at the end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.images = 0  # files that reached the engine (scanned, unknown or failed to decode)
        self.failed = 0  # every error record: unreadable images and arguments that led to none
        self.unknown = 0
        self.labels: Counter[str] = Counter()
        self.step_ms: Counter[str] = Counter()  # each step's milliseconds, summed over the records
        self.step_images: Counter[str] = Counter()  # how many records each step ran for

    def add(self, record: dict[str, Any], scanned: bool = True) -> None:
        """Count one output record; ``scanned``: it is a file's result (not a bad argument)."""
        self.images += scanned
        if record["status"] == "error":
            self.failed += 1
        elif record["status"] == "unknown":
            self.unknown += 1
        elif record.get("label"):
            self.labels[record["label"]] += 1
        for step, ms in record.get("timing_ms", {}).items():
            self.step_ms[step] += ms
            self.step_images[step] += 1

    def line(self, destination: str) -> str:
        """The summary, with ``destination`` (the output file) first."""
        elapsed = time.perf_counter() - self.started
        rate = self.images / elapsed if elapsed > 0 else 0.0
        parts = [f"{destination}: {self.images} image{'s' if self.images != 1 else ''} in {elapsed:.1f} s "
                 f"({rate:.1f} images/s)"]
        parts.append(f"{self.failed} failed, {self.unknown} unknown")
        if self.labels:
            parts.append(", ".join(f"{label} {n}" for label, n in self.labels.most_common()))
        if self.step_ms:
            parts.append("per image: " + ", ".join(
                f"{step.replace('_', ' ')} {self.step_ms[step] / self.step_images[step]:.1f} ms"
                for step in self.step_ms))
        return "; ".join(parts)
