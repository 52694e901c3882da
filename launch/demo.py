"""The demo: on the built-in synthetic set, train the CAM baseline, the BAS early stage and the
late stage (class-mean maps), evaluate each, and print one results table.

The paper's runs start from an ImageNet-pretrained backbone, which cannot be downloaded here;
the demo first pre-trains the backbone as a plain classifier on the synthetic training split
(``launch/pretrain.py``) and passes it to the CAM and early runs with ``--pretrained``. After
that, every run uses the paper's recipe (SGD, lr 0.001, BAS multipliers).

Every step runs the real command line (printed before it runs), so the demo doubles as a
recipe. Sized for a 2-core CPU: under 10 minutes in all. Besides the table it writes
``grid.png`` (test images with the CAM, early and late maps and boxes side by side, like the
paper's Fig. 3) and ``curves.png`` (every loss term and accuracy per epoch, from the JSON logs).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Shared by every run: a narrow network at 128 px on the default synthetic set.
COMMON = ["--dataset", "synthetic", "--image-size", "128", "--batch-size", "32", "--seed", "0",
          "--val-fraction", "0.1"]
PRETRAIN = ["--width", "0.25", "--epochs", "12", "--lr", "0.1"]
TRAIN = ["--width", "0.25", "--lr", "0.001", "--workers", "2"]
RUNS = [  # (name, extra train arguments)
    ("cam", ["--method", "cam", "--epochs", "12", "--milestones", "10"]),
    ("early", ["--stage", "early", "--epochs", "20", "--milestones", "16"]),
    ("late", ["--stage", "late", "--epochs", "10", "--milestones", "8"]),
]
# Rows of the paper's Table 1: (label, run, normalization); thresholds chosen on validation.
ROWS = [
    ("CAM", "cam", "minmax"),
    ("BAS (early, min-max)", "early", "minmax"),
    ("early + percentile-max", "early", "percentile:99"),
    ("late + min-max", "late", "minmax"),
    ("late + percentile-max (paper)", "late", "percentile:99"),
]
COLUMNS = [("Top-1 Loc", "top1_loc"), ("Top-5 Loc", "top5_loc"), ("GT-known", "gt_known"),
           ("MaxBoxAccV2", "maxboxaccv2"), ("Top-1 Cls", "top1_cls")]


def run(command: list[str]) -> None:
    print("\n$ " + " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def results_markdown(results: dict) -> str:
    """The paper's Table 1 layout as a Markdown table (percent), with each row's threshold."""
    header = "| Method | " + " | ".join(name for name, _ in COLUMNS) + " | norm, threshold |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for label, result in results.items():
        cells = " | ".join(f"{result[key]:.2f}" for _, key in COLUMNS)
        settings = result["settings"]
        lines.append(f"| {label} | {cells} | {settings['norm']}, {settings['threshold']:g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="run folder (replaced if it exists)")
    parser.add_argument("--data-root", default="data/synthetic")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        print(f"removing the previous demo run in {out}")
        shutil.rmtree(out)
    common = [*COMMON, "--data-root", args.data_root]
    start = time.time()
    backbone = out / "pretrain" / "backbone.pth"
    run(["launch/pretrain.py", *common, *PRETRAIN, "--out", str(backbone.parent)])
    for name, extra in RUNS:
        init = [] if name == "late" else ["--pretrained", str(backbone)]
        run(["launch/train.py", *common, *TRAIN, *extra, *init, "--out", str(out)])
    results = {}
    for label, name, norm in ROWS:
        path = out / "eval" / f"{name}_{norm.replace(':', '')}.json"
        run(["launch/evaluate.py", "--checkpoint", str(out / name / "checkpoint.pt"), "--norm", norm,
             "--sweep", "--protocol", "both", "--out", str(path)])
        results[label] = json.loads(path.read_text())
    run(["launch/evaluate.py", "--checkpoint", str(out / "cam" / "checkpoint.pt"), "--vis-checkpoints",
         str(out / "early" / "checkpoint.pt"), str(out / "late" / "checkpoint.pt"), "--save-vis", "8",
         "--vis-out", str(out / "grid.png"), "--out", str(out / "eval" / "grid_run.json")])
    from wsol_fast.visualize import plot_training_curves
    plot_training_curves([out / name / "log.jsonl" for name in ("pretrain", "cam", "early", "late")],
                         out / "curves.png", title="Demo training curves (synthetic set)")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = results_markdown(results)
    (out / "results.md").write_text(table)
    print("\nSynthetic test split, BAS protocol (thresholds chosen on the validation split) and MaxBoxAccV2:\n")
    print(table)
    print(f"demo finished in {time.time() - start:.0f} s; results in {out / 'results.json'}, pictures in "
          f"{out / 'grid.png'} and {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
