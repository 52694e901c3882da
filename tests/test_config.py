"""One source of defaults: the config dataclasses' fields give every training flag (default, help,
choices, check), the per-dataset presets are one table, and ``--config`` starts from a saved
run's config.json with the flags over it."""
import dataclasses
import json

import pytest

from wsol_fast import losses
from wsol_fast.commands.evaluate import evaluate_parser
from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.config import (DATASETS, PRESETS, DataConfig, LossConfig, OptimConfig, RunConfig, TrainConfig,
                              scaled_resize)
from wsol_fast.data import SyntheticSpec
from wsol_fast.fields import flag_of


def config(*argv) -> TrainConfig:
    return train_config(train_parser().parse_args(list(argv)))


def test_no_flags_give_the_dataclass_defaults_which_are_the_default_datasets_preset():
    assert config() == TrainConfig()
    preset = PRESETS[DATASETS[0]]
    cfg = TrainConfig()
    assert (cfg.data.batch_size, cfg.optim.epochs, cfg.optim.milestones) == (
        preset.batch_size, preset.epochs["early"], list(preset.milestones))
    assert (cfg.loss.alpha, cfg.loss.beta) == (preset.alpha, preset.beta)


@pytest.mark.parametrize("dataset", ["cub", "imagenet"])
@pytest.mark.parametrize("stage", ["early", "late"])
def test_a_dataset_takes_its_preset_unless_a_flag_sets_the_value(dataset, stage):
    preset = PRESETS[dataset]
    cfg = config("--dataset", dataset, "--data-root", "x", "--stage", stage)
    assert (cfg.data.batch_size, cfg.optim.epochs, cfg.optim.milestones, cfg.loss.alpha, cfg.loss.beta) == (
        preset.batch_size, preset.epochs[stage], list(preset.milestones), preset.alpha, preset.beta)
    cfg = config("--dataset", dataset, "--data-root", "x", "--batch-size", "7", "--epochs", "3", "--milestones",
                 "--alpha", "0.25")
    assert (cfg.data.batch_size, cfg.optim.epochs, cfg.optim.milestones, cfg.loss.alpha) == (7, 3, [], 0.25)


def test_every_flag_states_its_default_and_every_settable_field_has_a_flag():
    parser = train_parser()
    text = parser.format_help()
    flags = {option for action in parser._actions for option in action.option_strings}
    for section in (DataConfig, LossConfig, OptimConfig, RunConfig):
        for field in dataclasses.fields(section):
            flag = flag_of(field)
            if flag is not None:
                assert flag in flags, flag
    assert text.count("(default: ") >= 35
    assert f"--image-size IMAGE_SIZE network input (crop) size (default: {DataConfig.image_size})" in " ".join(
        text.split())


def test_shared_defaults_are_the_configs():
    """Other modules' defaults point at the config's instead of repeating them."""
    spec = SyntheticSpec()
    data = DataConfig()
    assert (spec.num_classes, spec.train_per_class, spec.test_per_class, spec.image_size, spec.seed) == (
        data.synthetic_classes, data.synthetic_train_per_class, data.synthetic_test_per_class,
        data.synthetic_image_size, data.synthetic_seed)
    import inspect
    defaults = inspect.signature(losses.late_loss).parameters
    loss = LossConfig()
    assert [defaults[n].default for n in ("lam", "alpha", "beta", "bg_rule")] == [
        loss.lam, loss.alpha, loss.beta, loss.bg_rule]


def test_resize_follows_a_new_image_size_unless_given():
    assert config("--image-size", "96").data.resize == scaled_resize(96) == 110
    assert config("--image-size", "96", "--resize", "120").data.resize == 120


def test_config_file_is_the_base_and_flags_override_it(tmp_path):
    saved = config("--dataset", "cub", "--data-root", "birds", "--stage", "late", "--lr", "0.02",
                   "--skip-bad-images", "--compile", "--milestones", "5", "9")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved.to_dict()))
    assert config("--config", str(path)) == saved
    cfg = config("--config", str(path), "--lr", "0.5", "--no-skip-bad-images", "--out", str(tmp_path / "again"))
    assert (cfg.optim.lr, cfg.data.skip_bad_images, cfg.run.out) == (0.5, False, str(tmp_path / "again"))
    assert (cfg.data.dataset, cfg.data.data_root, cfg.run.stage, cfg.run.compile, cfg.optim.milestones) == (
        "cub", "birds", "late", "inductor", [5, 9])
    assert cfg.data.batch_size == PRESETS["cub"].batch_size  # from the file, not re-derived


@pytest.mark.parametrize("content, message", [
    ("{not json", "Expecting property name"),
    ('{"optim": {"lr": -1}}', "optim.lr must be a number > 0"),
    ('{"data": {"loader": "ffcv"}}', "data.loader must be one of"),
    ('{"run": {"speed": 3}}', "unknown keys ['speed']"),
])
def test_a_bad_config_file_is_refused_naming_file_and_field(tmp_path, capsys, content, message):
    from wsol_fast.commands.train import train_main
    path = tmp_path / "run.json"
    path.write_text(content)
    assert train_main(["--config", str(path), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert text.startswith("error:") and str(path) in text and message in text
    assert not (tmp_path / "out").exists()


def test_evaluate_takes_the_generated_data_flags():
    args = evaluate_parser().parse_args(["--checkpoint", "c.pt", "--image-size", "64", "--no-skip-bad-images"])
    assert vars(args)["data.image_size"] == 64 and vars(args)["data.skip_bad_images"] is False
    assert "data.batch_size" not in vars(args)  # absent flags leave the checkpoint's value
