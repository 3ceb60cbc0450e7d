"""The one-line summary of a scan written to a file (``tagteller scan -o FILE``), for stderr:
how many images, how many failed or were unknown, the answers by label, and the speed.

    results.json: 120 images in 3.2 s (37.5 images/s); 2 failed, 3 unknown; nike 50, adidas 40, converse 25
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

    def add(self, record: dict[str, Any], scanned: bool = True) -> None:
        """Count one output record; ``scanned``: it is a file's result (not a bad argument)."""
        self.images += scanned
        if record["status"] == "error":
            self.failed += 1
        elif record["status"] == "unknown":
            self.unknown += 1
        elif record.get("label"):
            self.labels[record["label"]] += 1

    def line(self, destination: str) -> str:
        """The summary, with ``destination`` (the output file) first."""
        elapsed = time.perf_counter() - self.started
        rate = self.images / elapsed if elapsed > 0 else 0.0
        parts = [f"{destination}: {self.images} image{'s' if self.images != 1 else ''} in {elapsed:.1f} s "
                 f"({rate:.1f} images/s)"]
        parts.append(f"{self.failed} failed, {self.unknown} unknown")
        if self.labels:
            parts.append(", ".join(f"{label} {n}" for label, n in self.labels.most_common()))
        return "; ".join(parts)
