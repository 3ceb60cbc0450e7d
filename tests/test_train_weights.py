"""Pretrained backbones: where weights come from, the offline error, and fine-tuning MobileNet
with the ImageNet file from ``../shared/weights`` (skipped when it is absent): the stem stays
frozen, the top blocks learn, and BatchNorm statistics never move."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tagteller import Phase, TargetPlateauPolicy
from tagteller.engine import Engine
from tagteller.paths import installed_model_path
from tests.conftest import SHARED
from tests.test_train_datasets import colours_domain, make_folder_dataset, register, tiny_recipe

pytestmark = pytest.mark.train

MOBILENET_FILE = "mobilenet_2_5_224_tf_no_top.h5"


def test_weights_resolution(tmp_path, monkeypatch):
    from tagteller.errors import TagtellerError
    from tagteller.train.backbones import WeightsChoice, resolve_weights

    monkeypatch.setenv("TAGTELLER_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights(None, "MobileNet", {}, (160, 160)) == WeightsChoice("none")
    assert resolve_weights("none", "MobileNet", {}, (160, 160)) == WeightsChoice("none")
    assert resolve_weights("imagenet", "cnn", {}, (28, 28)) == WeightsChoice("none")
    # the file Keras would download, for any input size: MobileNet weights do not depend on it
    (tmp_path / "mobilenet_5_0_224_tf_no_top.h5").write_bytes(b"h5")
    assert resolve_weights("imagenet", "MobileNet", {"alpha": 0.5}, (160, 160)) == \
        WeightsChoice("file", tmp_path / "mobilenet_5_0_224_tf_no_top.h5")
    (tmp_path / "mobilenet_5_0_160_tf_no_top.h5").write_bytes(b"h5")
    assert resolve_weights("imagenet", "MobileNet", {"alpha": 0.5}, (160, 160)).path.name == \
        "mobilenet_5_0_160_tf_no_top.h5"
    with pytest.raises(TagtellerError, match="weights file not found"):
        resolve_weights(str(tmp_path / "nope.h5"), "MobileNet", {}, (160, 160))


def test_offline_without_cached_weights_names_the_way_out(tmp_path, monkeypatch):
    from tagteller.cli import build_app
    from tagteller.train.backbones import weights_file_names

    names = weights_file_names("MobileNet", {"alpha": 0.5}, (128, 128))
    keras_cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if any((keras_cache / n).exists() for n in names):
        pytest.skip("these weights are in the Keras cache here, so nothing would be downloaded")
    monkeypatch.setenv("TAGTELLER_WEIGHTS_DIR", str(tmp_path))  # empty
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: offline
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    recipe = tiny_recipe(backbone="MobileNet", backbone_options={"alpha": 0.5}, weights="imagenet",
                         input_size=(128, 128))
    register(colours_domain("netless", recipe=recipe))
    data = make_folder_dataset(tmp_path / "data", per_class=3)
    result = CliRunner().invoke(build_app(), ["train", "--domain", "netless", str(data), "--yes"])
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: cannot download ImageNet weights for MobileNet")
    assert "--weights PATH" in message and "--weights none" in message and "TAGTELLER_WEIGHTS_DIR" in message


def test_mobilenet_fine_tunes_from_the_shared_imagenet_file(tmp_path, monkeypatch):
    import h5py

    from tagteller.train.model import backbone_of, load_checkpoint
    from tagteller.train.trainer import TrainOptions, train_domain

    weights_file = SHARED / "weights" / MOBILENET_FILE
    if not weights_file.is_file():
        pytest.skip(f"../shared/weights/{MOBILENET_FILE} is not present on this machine")
    monkeypatch.setenv("TAGTELLER_WEIGHTS_DIR", str(weights_file.parent))
    recipe = tiny_recipe(
        backbone="MobileNet", backbone_options={"alpha": 0.25}, weights="imagenet", input_size=(96, 96),
        label_smoothing=0.1,
        phases=(Phase("head", unfreeze=0, learning_rate=2e-3, epochs=1),
                Phase("top-blocks", unfreeze=2, learning_rate=1e-3, epochs=1)),
    )
    domain = colours_domain("mobile", recipe=recipe, stopping=TargetPlateauPolicy(target_accuracy=None, max_epochs=2))
    data = make_folder_dataset(tmp_path / "data", per_class=12, size=64)
    result = train_domain(domain, TrainOptions(data=data), log=lambda _: None)
    assert result.outcome == "installed", result.message
    history = json.loads((result.run_dir / "history.json").read_text())
    assert [p["unfreeze"] for p in history["phases"]] == [0, 2]
    assert [e["phase"] for e in history["epochs"]] == [0, 1]

    with h5py.File(weights_file, "r") as h5:
        def original(layer: str, weight: str) -> np.ndarray:
            group = h5[layer][layer] if layer in h5[layer] else h5[layer]
            return np.asarray(group[next(k for k in group if k.startswith(weight))])

        backbone = backbone_of(load_checkpoint(result.run_dir / "best.keras"))
        # best.keras is the best epoch: when that is epoch 1, only the head had learned yet
        tuned = history["best"]["epoch"] == 2
        np.testing.assert_array_equal(backbone.get_layer("conv1").kernel.numpy(), original("conv1", "kernel"))
        assert np.array_equal(backbone.get_layer("conv_pw_13").kernel.numpy(),
                              original("conv_pw_13", "kernel")) != tuned
        # unfreeze=2 is blocks 12 and 13 (conv_pad/dw/pw_12, conv_dw/pw_13); block 11 stays frozen
        assert np.array_equal(backbone.get_layer("conv_dw_12").kernel.numpy(),
                              original("conv_dw_12", "depthwise_kernel")) != tuned
        np.testing.assert_array_equal(backbone.get_layer("conv_dw_11").kernel.numpy(),
                                      original("conv_dw_11", "depthwise_kernel"))
        np.testing.assert_array_equal(backbone.get_layer("conv_pw_11").kernel.numpy(), original("conv_pw_11", "kernel"))
        for bn in ("conv1_bn", "conv_pw_13_bn"):  # BatchNorm: inference mode throughout
            np.testing.assert_array_equal(backbone.get_layer(bn).moving_mean.numpy(), original(bn, "moving_mean"))
            np.testing.assert_array_equal(backbone.get_layer(bn).moving_variance.numpy(),
                                          original(bn, "moving_variance"))

    info = Engine(intra_threads=1).load(installed_model_path("mobile")).info
    assert info.input_size == (96, 96) and info.training["weights"] == weights_file.name  # no machine paths
    assert info.metrics["parity"]["passed"]
