"""The demo: on the built-in synthetic set, train the CAM baseline, the BAS early stage and the
late stage (class-mean maps), evaluate each, and print one results table.

The paper's runs start from an ImageNet-pretrained backbone, which cannot be downloaded here;
the demo first pre-trains the backbone as a plain classifier on the synthetic training split
(``launch/pretrain.py``) and passes it to the CAM and early runs with ``--pretrained``. After
that, every run uses the paper's recipe (SGD, lr 0.001, BAS multipliers).

Every step runs the real command line (printed before it runs), so the demo doubles as a
recipe. Sized for a 2-core CPU: under 10 minutes in all.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Shared by every run: a narrow network at 128 px on the default synthetic set.
COMMON = ["--dataset", "synthetic", "--image-size", "128", "--batch-size", "32", "--seed", "0"]
PRETRAIN = ["--width", "0.25", "--epochs", "12", "--lr", "0.1"]
TRAIN = ["--width", "0.25", "--lr", "0.001", "--workers", "2"]
RUNS = [  # (name, extra train arguments, evaluation method)
    ("cam", ["--method", "cam", "--epochs", "12", "--milestones", "10"], "cam"),
    ("early", ["--stage", "early", "--epochs", "20", "--milestones", "16"], "bas"),
    ("late", ["--stage", "late", "--epochs", "10", "--milestones", "8"], "bas"),
]


def run(command: list[str]) -> None:
    print("\n$ " + " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data-root", default="data/synthetic")
    args = parser.parse_args()
    out = Path(args.out)
    common = [*COMMON, "--data-root", args.data_root]
    start = time.time()
    backbone = out / "pretrain" / "backbone.pth"
    run(["launch/pretrain.py", *common, *PRETRAIN, "--out", str(backbone.parent)])
    for name, extra, _ in RUNS:
        init = [] if name == "late" else ["--pretrained", str(backbone)]
        run(["launch/train.py", *common, *TRAIN, *extra, *init, "--out", str(out)])
    for name, _, method in RUNS:
        run(["launch/evaluate.py", "--checkpoint", str(out / name / "checkpoint.pt"),
             "--method", method, "--out", str(out / name / "eval.json")])
    rows = {name: json.loads((out / name / "eval.json").read_text()) for name, _, _ in RUNS}
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\nDemo results (synthetic test split):")
    for name, result in rows.items():
        print(f"  {name:6s} top-1 cls {result['top1_cls']:6.2f}  GT-known loc {result['gt_known']:6.2f}  "
              f"top-1 loc {result['top1_loc']:6.2f}")
    print(f"demo finished in {time.time() - start:.0f} s; results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
