"""End-to-end training on a tiny synthetic set: the loss goes down, resume equals an
uninterrupted run, the late stage computes and saves class-mean maps, bad runs stop clearly."""
import json

import pytest
import torch
from kernel_testing import EXACT_RUN_FLAGS

from wsol_fast import losses
from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.data import normalize_pixels
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.train import train_config, train_main, train_parser
from wsol_fast.data import load_data_split
from wsol_fast.engine.run import run_training
from wsol_fast.engine.run_checkpoint import NonFiniteLossError
from wsol_fast.engine.trainer import EpochStats, Trainer
from wsol_fast.mean_maps import MeanMaps
from wsol_fast.models import MobileNetBAS

TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "2",
        "--synthetic-image-size", "64", "--image-size", "64", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--lr", "0.01"]


def config(tmp_path, *extra):
    args = train_parser().parse_args([*TINY, "--data-root", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "run"), *extra])
    return train_config(args)


def test_a_few_steps_lower_the_loss(tmp_path):
    cfg = config(tmp_path, "--epochs", "1")
    split = load_data_split(cfg, "train")
    cfg.model.num_classes = split.num_classes
    from wsol_fast.data import WSOLDataset
    dataset = WSOLDataset(split, train=False, image_size=64, resize=73)
    torch.manual_seed(0)
    trainer = Trainer(cfg, MobileNetBAS(split.num_classes, 0.25), dataset)
    images = normalize_pixels(torch.stack([dataset[i][0] for i in range(8)])).to(trainer.device)
    labels = torch.tensor([dataset[i][1] for i in range(8)]).to(trainer.device)
    first = trainer.training_step.forward_loss(images, labels)[0].item()
    for _ in range(15):
        trainer.train_step(images, labels, EpochStats())
    assert trainer.training_step.forward_loss(images, labels)[0].item() < 0.8 * first


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    straight = run_training(config(tmp_path / "a", "--epochs", "2", *EXACT_RUN_FLAGS))
    run_training(config(tmp_path / "b", "--epochs", "1", *EXACT_RUN_FLAGS))
    resumed = run_training(config(tmp_path / "b", "--epochs", "2", *EXACT_RUN_FLAGS), resume=True)
    assert resumed.epoch == 2
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    records = [json.loads(line) for line in (tmp_path / "b/run/early/log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"loss", "cls", "fg", "bg", "area", "top1", "images_per_s"} <= set(records[0])


def test_late_stage_starts_from_early_and_saves_mean_maps(tmp_path):
    run_training(config(tmp_path, "--epochs", "1"))
    late = run_training(config(tmp_path, "--stage", "late", "--epochs", "1"))
    saved = MeanMaps.from_state(load_checkpoint(tmp_path / "run/late/checkpoint.pt")["mean_maps"])
    assert saved.maps.shape == (3, 8, 8) and saved.counts.tolist() == [4, 4, 4]
    assert saved.empty_classes == [] and saved.maps.abs().sum() > 0
    torch.testing.assert_close(late.mean_maps.maps.cpu(), saved.maps)
    assert not (tmp_path / "run/late/mean_maps.pt").exists()  # the checkpoint holds the one copy
    assert "avg" in json.loads((tmp_path / "run/late/log.jsonl").read_text().splitlines()[0])
    assert late.epoch == 1
    out = tmp_path / "eval.json"
    assert evaluate_main(["--checkpoint", str(tmp_path / "run/late/checkpoint.pt"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 6 and 0 <= result["gt_known"] <= 100


def test_sweep_on_validation_saves_the_choice_and_evaluates_both_protocols(tmp_path):
    run_training(config(tmp_path, "--epochs", "1", "--val-fraction", "0.25"))
    split = load_data_split(config(tmp_path, "--val-fraction", "0.25"), "train")
    assert len(split) == 9, "one of each class's four training images is held out"
    checkpoint = tmp_path / "run/early/checkpoint.pt"
    out = tmp_path / "eval.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--sweep", "--protocol", "both",
                          "--cam", "top1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    chosen = load_checkpoint(checkpoint)["eval_settings"]
    best = max(result["sweep"], key=lambda row: row["gt_known"])
    assert (chosen["norm"], chosen["threshold"]) == (best["norm"], best["best_threshold"])
    assert result["settings"]["threshold"] == chosen["threshold"]
    assert {"maxboxacc", "maxboxaccv2", "gt_known", "top1_loc"} <= set(result)
    assert evaluate_main(["--checkpoint", str(checkpoint), "--ten-crop", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["norm"] == chosen["norm"], "saved choice is the default"


def test_sweep_needs_a_validation_split(tmp_path, capsys):
    run_training(config(tmp_path, "--epochs", "1"))
    assert evaluate_main(["--checkpoint", str(tmp_path / "run/early/checkpoint.pt"), "--sweep"]) == 1
    assert "--val-fraction" in capsys.readouterr().out


def test_late_stage_without_early_checkpoint_is_refused(tmp_path, capsys):
    assert train_main([*TINY, "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "r"),
                       "--stage", "late"]) == 1
    assert "early-stage checkpoint" in capsys.readouterr().out


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    run_training(config(tmp_path, "--epochs", "1"))
    checkpoint = tmp_path / "run/early/checkpoint.pt"
    before = checkpoint.read_bytes()

    def nan_loss(out, labels, *args, **kwargs):
        total, parts = real_early_loss(out, labels, *args, **kwargs)
        return total * float("nan"), parts

    real_early_loss = losses.early_loss
    monkeypatch.setattr(losses, "early_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run_training(config(tmp_path, "--epochs", "2"), resume=True)
    assert checkpoint.read_bytes() == before


def test_command_line_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--dataset", "mnist"])
    assert exit_info.value.code == 2
    assert train_main(["--dataset", "cub"]) == 2
    assert "error: --data-root is required" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_main(["--epochs", "0"])
    assert train_main([*TINY, "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--resume"]) == 1
    assert "no checkpoint" in capsys.readouterr().out
    assert train_main([*TINY, "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--epochs", "1"]) == 0
    assert train_main([*TINY, "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--epochs", "1"]) == 1
    assert "pass --resume" in capsys.readouterr().out


def test_pretrained_backbone_round_trip(tmp_path):
    """launch/pretrain.py output loads into train.py --pretrained (pytorch-ssd format, by position)."""
    from wsol_fast.engine.pretrain import pretrain_backbone
    from wsol_fast.models import load_pretrained_backbone

    cfg = config(tmp_path)
    split = load_data_split(cfg, "train")
    path = pretrain_backbone(split, tmp_path / "pre", width_mult=0.25, image_size=64, resize=73,
                             epochs=1, batch_size=4, workers=0)
    saved = torch.load(path, weights_only=True)
    assert "fc.weight" in saved and "0.0.weight" in saved
    model = MobileNetBAS(3, 0.25)
    assert load_pretrained_backbone(model.features, path) == "pytorch-ssd"
    assert torch.equal(model.features[13][3].weight, saved["13.3.weight"])
    trainer = run_training(config(tmp_path, "--epochs", "1", "--pretrained", str(path)))
    assert trainer.epoch == 1
