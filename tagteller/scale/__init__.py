"""Scans past one machine: ``tagteller scan --engine ray`` on Ray Data.

The job is Ray Data's batch-inference pattern and nothing home-made: Ray reads the images as
bytes (:func:`ray.data.read_binary_files`, from local folders or any fsspec URL), a pool of actors
each holding the model once decodes and classifies them with tagteller's own engine
(:class:`tagteller.scale.actor.ScanActor` calls :meth:`tagteller.engine.Engine.scan` and
:func:`tagteller.output.result_record`: no second implementation of preprocessing or records), and
the driver streams the records into Parquet or JSON-lines shards, each written atomically, so an
interrupted job loses nothing it saved and ``--resume`` carries on where it stopped.

- :mod:`tagteller.scale.inputs`: folders, globs and URLs to the list of files (name and size);
- :mod:`tagteller.scale.shards`: the record schema, atomic shard writing, what a folder already holds;
- :mod:`tagteller.scale.actor`: the Ray actor;
- :mod:`tagteller.scale.job`: connecting to Ray, building the dataset, streaming the results.

Nothing here imports Ray at module level except :mod:`~tagteller.scale.job` and
:mod:`~tagteller.scale.actor`; a plain ``tagteller scan`` never imports this package.
"""

from __future__ import annotations

import importlib.util

#: The optional extra that brings Ray Data, pyarrow and fsspec.
RAY_EXTRA = "ray"
#: What to tell a user who asked for ``--engine ray`` without the extra.
MISSING_EXTRA = (f"--engine ray needs the [{RAY_EXTRA}] extra: pip install 'tagteller[{RAY_EXTRA}]'")
_NEEDED = ("ray", "pyarrow", "fsspec")


def missing_modules() -> list[str]:
    """The modules of the ``[ray]`` extra that are not installed (found without importing them)."""
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if "ray" not in missing and importlib.util.find_spec("ray.data") is None:
        missing.append("ray.data")
    return missing
