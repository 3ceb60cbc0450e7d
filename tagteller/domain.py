"""The :class:`Domain`: one kind of thing tagteller can tell apart, declared by a plugin.

A domain owns its labels, its dataset layout, its training recipe, its stopping policy and the
place its shipped model lives. Declaring one is plain data: it never imports tensorflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tagteller.datasets import DatasetLayout, FolderLayout
from tagteller.errors import DomainMismatchError
from tagteller.names import validate_domain_name, validate_labels
from tagteller.paths import installed_model_path
from tagteller.preprocessing import Preprocessing
from tagteller.stopping import StoppingPolicy, TargetPlateauPolicy
from tagteller.text_cues import TextCues


@dataclass(frozen=True)
class Phase:
    """One training phase.

    ``unfreeze`` is how many of the backbone's top blocks are trainable (0 = head only;
    ``"all"`` = the whole backbone). BatchNorm layers always stay in inference mode.
    ``epochs`` caps the phase; the stopping policy may end it sooner.
    """

    name: str
    unfreeze: int | Literal["all"] = 0
    learning_rate: float = 1e-3
    epochs: int = 10

    def __post_init__(self) -> None:
        if self.unfreeze != "all" and (not isinstance(self.unfreeze, int) or self.unfreeze < 0):
            raise ValueError(f"phase {self.name!r}: unfreeze must be a block count >= 0 or 'all'")
        if self.learning_rate <= 0 or self.epochs < 1:
            raise ValueError(f"phase {self.name!r}: learning_rate must be > 0 and epochs >= 1")


DEFAULT_AUGMENTATION: dict[str, float | bool] = {
    "flip": True,  # horizontal flip (switch off where mirror images change the label)
    "rotation": 0.05,  # fraction of a full turn
    "zoom": 0.1,
    "contrast": 0.1,
    "erasing": 0.0,  # probability of random erasing (a cut-out rectangle)
}


@dataclass(frozen=True)
class Recipe:
    """How a domain's model is fine-tuned with Keras (used by ``tagteller train``).

    ``backbone`` is a ``keras.applications`` name (``"MobileNet"``, ``"MobileNetV2"``,
    ``"EfficientNetB0"``, ``"ResNet50"``, ``"InceptionV3"``, ...) or ``"cnn"`` for a small custom
    CNN trained from scratch. ``weights`` is ``"imagenet"``, a path to a weights file, or None.
    """

    backbone: str = "MobileNet"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = "imagenet"
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    pooling: Literal["avg", "max", "flatten"] = "avg"  # flatten keeps where features are
    dropout: float = 0.2
    dense_units: int = 0  # 0: the classifier sits right on the pooled features
    batch_size: int = 32
    augmentation: dict[str, float | bool] = field(default_factory=lambda: dict(DEFAULT_AUGMENTATION))
    phases: tuple[Phase, ...] = (
        Phase("head", unfreeze=0, learning_rate=1e-3, epochs=10),
        Phase("top-blocks", unfreeze=2, learning_rate=1e-4, epochs=10),
    )
    schedule: Literal["plateau", "cosine"] = "plateau"
    label_smoothing: float = 0.0
    #: The exported model answers with the average of its probabilities for the image and for
    #: its mirror image (inside the ONNX graph, so plain onnxruntime users get it too). Only
    #: for domains where a mirror image keeps its label.
    test_time_flip: bool = False
    class_weights: Literal["auto", "none"] = "auto"
    #: 0: every epoch runs the whole network. N > 0 (pretrained backbones whose phases unfreeze
    #: block counts, not "all"): the frozen layers below the deepest phase's blocks run once, over
    #: N views of each training image (view 0 plain, the rest augmented), and training runs on
    #: those cached features (:mod:`tagteller.train.prefix_cache`): many times faster on a CPU.
    cached_views: int = 0
    val_fraction: float = 0.2
    seed: int = 1234

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a recipe needs at least one phase")
        h, w = self.input_size
        if h < 8 or w < 8:
            raise ValueError("input_size must be at least 8x8")
        if self.cached_views < 0:
            raise ValueError("cached_views must be >= 0")
        if self.cached_views and any(phase.unfreeze == "all" for phase in self.phases):
            raise ValueError("cached_views needs every phase to unfreeze a block count, not 'all'")
        if not 0 < self.val_fraction < 0.9:
            raise ValueError("val_fraction must be within (0, 0.9)")
        if self.pooling not in ("avg", "max", "flatten"):
            raise ValueError(f"pooling must be 'avg', 'max' or 'flatten', not {self.pooling!r}")
        unknown = set(self.augmentation) - set(DEFAULT_AUGMENTATION)
        if unknown:
            raise ValueError(f"unknown augmentation keys: {sorted(unknown)}")

    def with_(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (recipes are frozen)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Domain:
    """A domain: what tagteller tells apart, and everything needed to train and run a model.

    - ``name``: lowercase id used on the command line and in file names.
    - ``labels``: the classes, in model output order.
    - ``layout``: how a dataset folder for this domain is organised (see :mod:`tagteller.datasets`).
    - ``recipe``: the Keras fine-tune recipe; ``stopping``: the stopping policy.
    - ``model_path``: the model the plugin ships (None: none yet). A model installed by
      ``tagteller train`` in the user's data folder takes precedence (:meth:`resolve_model`).
    - ``allow_new_labels``: users may add classes from their own photos (``--new-label``).
    - ``low_confidence``: below this top-1 probability a result is reported as "not sure".
    - ``text_cues``: words on the photo that name labels (a brand on a tag), read with the optional
      OCR extra (``scan --read-text``) as a second opinion; see :mod:`tagteller.text_cues`.
    """

    name: str
    description: str
    labels: tuple[str, ...]
    layout: DatasetLayout = field(default_factory=FolderLayout)
    recipe: Recipe = field(default_factory=Recipe)
    stopping: StoppingPolicy = field(default_factory=TargetPlateauPolicy)
    model_path: Path | None = None
    allow_new_labels: bool = False
    low_confidence: float = 0.5
    data_source: str = ""  # where the training data comes from (shown by `tagteller domains`)
    plugin: str | None = None  # filled in by the registry: the plugin that registered it
    text_cues: TextCues | None = None

    def __post_init__(self) -> None:
        validate_domain_name(self.name)
        object.__setattr__(self, "labels", validate_labels(self.labels))
        if self.model_path is not None:
            object.__setattr__(self, "model_path", Path(self.model_path))
        if not isinstance(self.stopping, StoppingPolicy):
            raise TypeError(f"domain {self.name!r}: stopping must have decide() and describe()")
        if not 0 <= self.low_confidence < 1:
            raise ValueError(f"domain {self.name!r}: low_confidence must be within [0, 1)")
        if self.text_cues is not None:
            if not isinstance(self.text_cues, TextCues):
                raise TypeError(f"domain {self.name!r}: text_cues must be a TextCues")
            self.text_cues.check_labels(self.labels, f"domain {self.name!r}")

    @property
    def preprocessing(self) -> Preprocessing:
        return self.recipe.preprocessing

    def check_model(self, model_domain: str, where: object) -> None:
        """Refuse a model trained for another domain: raise :class:`DomainMismatchError` when
        ``model_domain`` (its metadata's domain) is not this one; ``where`` names the model file.
        The one check of this kind: the CLI's scans, the server, evaluate and demo call it."""
        if model_domain != self.name:
            raise DomainMismatchError(str(where), model_domain, self.name)

    def resolve_model(self) -> Path | None:
        """The model to use: the user's installed one, else the shipped one, else None."""
        installed = installed_model_path(self.name)
        if installed.is_file():
            return installed
        if self.model_path is not None and self.model_path.is_file():
            return self.model_path
        return None

    def model_source(self) -> str:
        """``"installed"``, ``"shipped"`` or ``"none"``: where :meth:`resolve_model` looks first."""
        path = self.resolve_model()
        if path is None:
            return "none"
        return "installed" if path == installed_model_path(self.name) else "shipped"
