"""The demo: on the built-in synthetic set, train the CAM baseline, the BAS early stage and the
late stage (class-mean maps), evaluate each, and print one results table.

Every step runs the real command line (printed before it runs), so the demo doubles as a
recipe. Sized for a 2-core CPU: about 10 minutes in all.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Shared by every run: a narrow network at 128 px on the default synthetic set.
COMMON = ["--dataset", "synthetic", "--width", "0.25", "--image-size", "128", "--batch-size", "32",
          "--seed", "0"]
TRAIN = ["--lr", "0.01", "--workers", "2"]
RUNS = [  # (name, extra train arguments, evaluation method)
    ("cam", ["--method", "cam", "--epochs", "30", "--milestones", "25"], "cam"),
    ("early", ["--stage", "early", "--epochs", "30", "--milestones", "25"], "bas"),
    ("late", ["--stage", "late", "--epochs", "10", "--milestones", "8", "--lr", "0.001"], "bas"),
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
    for name, extra, _ in RUNS:
        run(["launch/train.py", *common, *TRAIN, *extra, "--out", str(out)])
    for name, _, method in RUNS:
        run(["launch/evaluate.py", *common, "--checkpoint", str(out / name / "checkpoint.pt"),
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
