"""The speed options of ``launch/train.py`` through the real trainer (DeepSpeed engine +
``TrainStep``): bf16 autocast against fp32, channels_last against NCHW, ``torch.compile`` against
eager; ``--precision bf16`` and the DeepSpeed JSON's ``torch_autocast`` section are one thing."""
import json
from pathlib import Path

import pytest
import torch

from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.data import WSOLDataset, normalize_pixels
from wsol_fast import collectives
from wsol_fast.engine import distributed
from wsol_fast.engine.optim import build_optimizer
from wsol_fast.data import load_data_split
from wsol_fast.engine.step import stage_loss
from wsol_fast.engine.trainer import EpochStats, Trainer
from wsol_fast.models import MobileNetBAS

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "3", "--synthetic-test-per-class", "1",
        "--synthetic-image-size", "48", "--image-size", "48", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--loader", "torch", "--lr", "0.01", "--epochs", "1"]
# Another summation order (channels_last kernels, compiled code) changes float32 results by
# ~1e-7, which the 14 blocks at initialization amplify about 1.4x each (~100x) in the forward pass
# (2e-4 bounds the losses) and more in the backward (weight updates within 2%; measured <= 0.8%).
REORDER_RTOL = 2e-4
REORDER_UPDATE_RTOL = 0.02


def one_step(tmp_path, *flags, stage="early", steps=2):
    """A fresh trainer (model from seed 0) after ``steps`` steps on a fixed batch -> (trainer, summed
    losses of the steps, parameters after them)."""
    cfg = train_config(train_parser().parse_args([*TINY, "--data-root", str(tmp_path.parent / "data"),
                                                  "--out", str(tmp_path), "--stage", stage, *flags]))
    split = load_data_split(cfg, "train")
    cfg.model.num_classes = split.num_classes
    dataset = WSOLDataset(split, train=False, image_size=48, resize=55)
    torch.manual_seed(0)
    model = MobileNetBAS(split.num_classes, 0.25)
    mean_maps = None
    if stage == "late":
        from wsol_fast.mean_maps import MeanMaps
        mean_maps = MeanMaps(torch.rand(split.num_classes, 6, 6), torch.ones(split.num_classes, dtype=torch.int64))
    trainer = Trainer(cfg, model, dataset, mean_maps)
    images = normalize_pixels(torch.stack([dataset[i][0] for i in range(4)]))
    labels = torch.tensor([dataset[i][1] for i in range(4)])
    stats = EpochStats()
    for _ in range(steps):
        trainer.train_step(images, labels, stats)
    totals = stats.totals()
    return trainer, totals, {name: value.detach().float().clone() for name, value in trainer.model.named_parameters()}


def assert_parameters_close(a: dict, b: dict, atol: float, rtol: float) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=rtol, msg=name)


def assert_updates_close(a: dict, b: dict, rtol: float) -> None:
    """Each weight's update from the seed-0 initialization in ``a`` within ``rtol`` (relative L2)
    of the one in ``b``."""
    torch.manual_seed(0)
    for name, initial in MobileNetBAS(3, 0.25).named_parameters():
        update_a, update_b = a[name] - initial.detach(), b[name] - initial.detach()
        assert (update_a - update_b).norm() <= rtol * update_b.norm() + 1e-7, name


def test_bf16_step_against_fp32(tmp_path):
    """bf16 autocast (convolutions in bf16) keeps fp32 master weights and BatchNorm; the first
    step's smooth loss terms are within 2% of fp32 (``bg`` is left out: its r = 0 rule, S_bg >= S,
    flips on rounding-sized changes). The weight update is compared with a plain autocast step
    below, not with fp32: at initialization the network amplifies rounding about 1.4x per layer
    (0.3% relative after block 0, 39% after block 13, measured at 96 px), so bf16 and fp32 updates
    differ by about 100% with no bug."""
    fp32, fp32_totals, _ = one_step(tmp_path / "fp32", steps=1)
    bf16, bf16_totals, _ = one_step(tmp_path / "bf16", "--precision", "bf16", steps=1)
    assert bf16.cfg.run.precision == "bf16" and fp32.cfg.run.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(b.dtype in (torch.float32, torch.int64) for b in bf16.model.buffers())
    for name in ("cls", "fg", "area"):
        assert bf16_totals[name] == pytest.approx(fp32_totals[name], rel=0.02), name
    assert bf16_totals["loss"] != fp32_totals["loss"], "bf16 autocast changed nothing: it did not run"


def test_bf16_trainer_step_equals_a_plain_autocast_step(tmp_path):
    """Under the DeepSpeed engine the bf16 step is torch.autocast over forward + loss with fp32
    SGD, as written out here (DeepSpeed would switch an outer autocast off inside its forward
    unless its config enables the same)."""
    trainer, totals, params = one_step(tmp_path / "bf16", "--precision", "bf16", steps=2)
    dataset = trainer.train_set
    images = normalize_pixels(torch.stack([dataset[i][0] for i in range(4)]))
    labels = torch.tensor([dataset[i][1] for i in range(4)])
    torch.manual_seed(0)
    model = MobileNetBAS(3, 0.25)
    optimizer = build_optimizer(model, trainer.cfg.optim)
    losses = []
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total, _, _ = stage_loss(model, images, labels, "early", trainer.cfg.loss)
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(total.item())
    assert totals["loss"] == pytest.approx(sum(losses), rel=1e-5)
    assert_parameters_close(params, dict(model.named_parameters()), atol=1e-5, rtol=1e-4)


def test_precision_flag_equals_the_deepspeed_json(tmp_path):
    """``--precision bf16`` and ``--deepspeed_config launch/configs/ds_bf16.json`` run the same step."""
    _, flag_totals, flag_params = one_step(tmp_path / "flag", "--precision", "bf16")
    json_trainer, json_totals, json_params = one_step(
        tmp_path / "json", "--deepspeed_config", str(ROOT / "launch/configs/ds_bf16.json"))
    assert json_trainer.cfg.run.precision == "bf16"
    assert json_totals == flag_totals
    assert_parameters_close(json_params, flag_params, atol=0, rtol=0)


def test_the_flag_adds_the_section_of_the_bf16_json():
    """What ``--precision bf16`` adds is ds_bf16.json's section, communication dtypes included
    (they matter with several processes only, so the one-process comparison above cannot tell)."""
    saved = json.loads((ROOT / "launch/configs/ds_bf16.json").read_text())["torch_autocast"]
    config, precision = distributed.with_precision({}, "bf16")
    assert precision == "bf16" and config["torch_autocast"] == saved


def test_an_unknown_compile_backend_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(ValueError, match="--compile 'inductr'"):
        one_step(tmp_path / "run", "--compile", "inductr")


def test_float16_autocast_is_refused(tmp_path):
    config = tmp_path / "fp16.json"
    config.write_text('{"torch_autocast": {"enabled": true, "dtype": "float16"}}')
    with pytest.raises(ValueError, match="fp16.json: torch_autocast needs"):
        one_step(tmp_path / "run", "--deepspeed_config", str(config))


@pytest.mark.parametrize("stage,zero", [("early", False), ("late", False), ("early", True)])
def test_channels_last_step_equals_nchw(tmp_path, stage, zero):
    """channels_last lands where NCHW does; under ZeRO (flat parameter buffers) only the batches
    are channels_last."""
    flags = ["--deepspeed_config", str(ROOT / "launch/configs/ds_zero1.json")] if zero else []
    nchw, nchw_totals, nchw_params = one_step(tmp_path / "nchw", *flags, stage=stage, steps=1)
    last, last_totals, last_params = one_step(tmp_path / "last", "--channels-last", *flags, stage=stage, steps=1)
    converted = any(p.dim() == 4 and p.shape[1] > 1 and p.is_contiguous(memory_format=torch.channels_last)
                    and not p.is_contiguous() for p in last.model.parameters())
    assert converted != zero
    for name in nchw_totals:
        assert last_totals[name] == pytest.approx(nchw_totals[name], rel=REORDER_RTOL), name
    assert_updates_close(last_params, nchw_params, REORDER_UPDATE_RTOL)


def test_compiled_step_equals_eager(tmp_path):
    """``--compile aot_eager``: TorchDynamo captures forward + loss through the DeepSpeed engine and
    AOTAutograd builds the backward, as ``--compile`` (inductor) does; inductor's code generation
    itself is left to PyTorch's tests (it takes about 4 minutes for this step on 2 cores)."""
    torch._dynamo.reset()
    eager, eager_totals, eager_params = one_step(tmp_path / "eager", steps=1)
    compiled, compiled_totals, compiled_params = one_step(tmp_path / "compiled", "--compile", "aot_eager", steps=1)
    assert compiled.cfg.run.compile == "aot_eager"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "nothing was compiled"
    assert compiled.training_step.forward_loss is not compiled.training_step.forward_loss_eager
    for name in eager_totals:
        assert compiled_totals[name] == pytest.approx(eager_totals[name], rel=REORDER_RTOL), name
    assert_updates_close(compiled_params, eager_params, REORDER_UPDATE_RTOL)
    torch._dynamo.reset()


def test_speed_options_are_saved_with_the_run(tmp_path):
    trainer, _, _ = one_step(tmp_path / "run", "--channels-last")
    saved = trainer.state_dict()["config"]["run"]
    assert (saved["precision"], saved["channels_last"], saved["compile"]) == ("fp32", True, None)
    assert collectives.world_size() == 1
