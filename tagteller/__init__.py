"""tagteller: tell what a thing is from a photo.

The public surface a plugin author needs is re-exported here: the ``hookimpl`` marker, the
:class:`~tagteller.domain.Domain` object and its parts, and the stopping policies. Importing this
package never imports tensorflow.
"""

from __future__ import annotations

__version__ = "0.1.0"

import pluggy

#: Marker for plugin hook implementations: ``@tagteller.hookimpl``.
hookimpl = pluggy.HookimplMarker("tagteller")

from tagteller.domain import Domain, Phase, Recipe  # noqa: E402
from tagteller.datasets import (  # noqa: E402
    CsvManifestLayout,
    FolderLayout,
    IdxLayout,
    SplitFolderLayout,
)
from tagteller.preprocessing import Preprocessing  # noqa: E402
from tagteller.stopping import StoppingPolicy, TargetPlateauPolicy  # noqa: E402

__all__ = [
    "__version__",
    "hookimpl",
    "Domain",
    "Phase",
    "Recipe",
    "Preprocessing",
    "FolderLayout",
    "SplitFolderLayout",
    "IdxLayout",
    "CsvManifestLayout",
    "StoppingPolicy",
    "TargetPlateauPolicy",
]
