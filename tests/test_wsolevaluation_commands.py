"""``--dataset wsolevaluation`` through the commands on tiny fabricated metadata trees: train on
train/, evaluate --sweep on val/ (the choice saved with the checkpoint), evaluate test/, localize;
an OpenImages-like tree is evaluated by PxAP and classification."""
import json
import shutil

from wsolevaluation_trees import fabricate_tree

from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.localize import localize_main
from wsol_fast.commands.train import train_main
from wsol_fast.config import PRESETS

TINY = ["--image-size", "64", "--batch-size", "4", "--width", "0.25", "--workers", "0", "--lr", "0.01",
        "--epochs", "1", "--loader", "torch"]


def wsolevaluation_flags(tree) -> list[str]:
    return ["--dataset", "wsolevaluation", "--metadata-root", str(tree.metadata), "--data-root", str(tree.data)]


def test_cub_like_tree_trains_sweeps_on_val_evaluates_test_and_localizes(tmp_path, capsys):
    tree = fabricate_tree(tmp_path / "tree", "CUB")
    run = tmp_path / "run"
    assert train_main([*wsolevaluation_flags(tree), *TINY, "--out", str(run)]) == 0
    saved = json.loads((run / "early/config.json").read_text())
    assert saved["data"]["metadata_dataset"] == "CUB" and saved["model"]["num_classes"] == 3
    assert saved["optim"]["milestones"] == list(PRESETS["cub"].milestones)  # CUB's preset, not synthetic's
    assert train_main([*wsolevaluation_flags(tree), *TINY, "--out", str(run), "--stage", "late"]) == 0

    checkpoint = run / "late/checkpoint.pt"
    out = tmp_path / "test.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--sweep", "--protocol", "both", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    chosen = load_checkpoint(checkpoint)["eval_settings"]
    best = max(result["sweep"], key=lambda row: row["gt_known"])
    assert (chosen["norm"], chosen["threshold"]) == (best["norm"], best["best_threshold"])
    assert result["split"] == "test" and result["images"] == len(tree.ids["test"])
    assert {"gt_known", "top1_loc", "maxboxacc", "maxboxaccv2"} <= set(result)
    assert evaluate_main(["--checkpoint", str(checkpoint), "--split", "val", "--protocol", "maxboxacc",
                          "--box-rule", "contour", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == len(tree.ids["val"]) and result["settings"]["norm"] == chosen["norm"]
    assert result["settings"]["box_rule"] == "contour" and "maxboxaccv2" in result

    located = tmp_path / "localize"
    assert localize_main([str(tree.data), "--checkpoint", str(checkpoint), "--out", str(located), "--workers", "0",
                          "--annotations", str(tree.metadata / "test/localization.txt")]) == 0
    records = json.loads((located / "localizations.json").read_text())
    assert records["settings"]["threshold"] == chosen["threshold"]
    with_truth = [record for record in records["images"] if "iou" in record]
    assert sorted(record["key"] for record in with_truth) == sorted(tree.ids["test"])

    shutil.rmtree(tree.metadata / "val")
    assert evaluate_main(["--checkpoint", str(checkpoint), "--sweep"]) == 1
    assert f"split folder not found: {tree.metadata / 'val'}" in capsys.readouterr().out


def test_openimages_like_tree_is_evaluated_by_pxap(tmp_path, capsys):
    tree = fabricate_tree(tmp_path / "tree", "OpenImages")
    run = tmp_path / "run"
    assert train_main([*wsolevaluation_flags(tree), *TINY, "--out", str(run)]) == 0
    assert json.loads((run / "early/config.json").read_text())["data"]["metadata_dataset"] == "OpenImages"
    checkpoint = run / "early/checkpoint.pt"
    out = tmp_path / "test.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--sweep", "--out", str(out), "--step", "0.01"]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == len(tree.ids["test"]) and 0 <= result["pxap"] <= 100
    assert "gt_known" not in result and "top1_cls" in result
    chosen = load_checkpoint(checkpoint)["eval_settings"]
    assert chosen["norm"] == max(result["sweep"], key=lambda row: row["pxap"])["norm"]
    assert chosen["threshold"] == PRESETS["openimages"].thresholds["bas"]  # PxAP chooses no threshold
    assert "PxAP on the validation split" in capsys.readouterr().out

    (tree.data / "masks/test" / sorted(p.name for p in (tree.data / "masks/test").iterdir())[0]).unlink()
    assert evaluate_main(["--checkpoint", str(checkpoint)]) == 1
    assert "mask file not found" in capsys.readouterr().out
