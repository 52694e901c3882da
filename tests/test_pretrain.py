"""``launch/pretrain.py`` (the stand-in for ImageNet pre-training): it trains with the requested
``--train-crop`` augmentation and saves a base net that ``--pretrained`` loads."""
import runpy
from pathlib import Path

import pytest
import torch

import wsol_fast.engine.pretrain as pretrain_module

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--synthetic-classes", "4", "--synthetic-train-per-class", "3", "--synthetic-test-per-class", "2",
        "--synthetic-image-size", "64"]


@pytest.mark.parametrize("crop", ["bas", "random-resized"])
def test_pretrain_uses_the_requested_crop(tmp_path, tiny_synthetic_root, monkeypatch, crop):
    crops = []
    dataset_class = pretrain_module.WSOLDataset

    def recording_dataset(*args, **kwargs):
        crops.append(kwargs.get("train_crop"))
        return dataset_class(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "WSOLDataset", recording_dataset)
    main = runpy.run_path(str(ROOT / "launch/pretrain.py"))["main"]
    out = tmp_path / "pretrain"
    assert main(["--data-root", str(tiny_synthetic_root), *TINY, "--image-size", "32", "--batch-size", "4",
                 "--workers", "0", "--width", "0.25", "--epochs", "1", "--train-crop", crop,
                 "--out", str(out)]) == 0
    assert crops == [crop]
    state = torch.load(out / "backbone.pth", weights_only=True)
    assert "fc.weight" in state and state["fc.weight"].shape[0] == 4
