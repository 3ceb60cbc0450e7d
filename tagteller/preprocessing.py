"""The preprocessing contract between a domain, its model file and the engine.

A :class:`Preprocessing` says how a photo becomes the model's input tensor. It is recorded as
JSON in the model's metadata (key ``preprocessing``) so that the engine, and a user with plain
onnxruntime, apply exactly what the model was trained with. Pixel scaling (e.g. MobileNet's
[-1, 1]) is *not* here: it is inside the ONNX graph, whose input is always float32 pixels in
[0, 255], NHWC.

Steps, in order (see :func:`tagteller.imaging.prepare`):

1. decode; honour EXIF orientation; take the first frame of an animation;
2. flatten transparency onto ``background`` (``"white"`` or ``"black"``);
3. convert to ``color_mode`` (``"RGB"`` or ``"L"``);
4. ``invert``: ``"never"``, ``"always"``, or ``"auto"`` (invert when the image border is light,
   so a product photo on white looks like a dark-background training image);
5. ``trim``: crop to the bounding box of pixels that differ from the border colour by more than
   ``trim_threshold`` (after inversion), then add ``trim_margin`` (fraction of the longer side);
6. ``resize``: ``"stretch"`` to the input size, ``"pad"`` (keep aspect, pad with the
   border colour, centred) or ``"crop"`` (keep aspect, centre-crop).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from tagteller.errors import ModelError

ColorMode = Literal["RGB", "L"]
ResizeMode = Literal["stretch", "pad", "crop"]
InvertMode = Literal["never", "always", "auto"]

_CHOICES = {
    "color_mode": ("RGB", "L"),
    "resize": ("stretch", "pad", "crop"),
    "invert": ("never", "always", "auto"),
    "background": ("white", "black"),
}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes an input tensor; see the module docstring for the steps."""

    color_mode: ColorMode = "RGB"
    resize: ResizeMode = "stretch"
    invert: InvertMode = "never"
    trim: bool = False
    trim_threshold: int = 24
    trim_margin: float = 0.04
    background: Literal["white", "black"] = "white"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ValueError(f"preprocessing {key}={value!r}: expected one of {allowed}")
        if not 0 <= int(self.trim_threshold) <= 255:
            raise ValueError("preprocessing trim_threshold must be within 0..255")
        if not 0 <= float(self.trim_margin) <= 0.5:
            raise ValueError("preprocessing trim_margin must be within 0..0.5")

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "RGB" else 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """Parse metadata (already JSON-decoded); unknown keys are an error, not ignored."""
        if not isinstance(data, dict):
            raise ModelError("preprocessing metadata must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"preprocessing metadata has unknown keys: {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"preprocessing metadata is invalid: {exc}") from None
