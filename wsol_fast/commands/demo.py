"""``wsol-fast demo`` (``launch/demo.py``, ``make demo``): on the built-in synthetic set, train
the CAM baseline, the BAS early stage and the late stage (class-mean maps), evaluate each, and
print one results table.

The paper's runs start from an ImageNet-pretrained backbone, which cannot be downloaded here;
the demo first pre-trains the backbone as a plain classifier on the synthetic training split
(``launch/pretrain.py``) and passes it to the CAM and early runs with ``--pretrained``. After
that, every run uses the paper's recipe (SGD, lr 0.001, BAS multipliers).

Every step runs the real command line (printed before it runs), so the demo doubles as a
recipe. Sized for a 2-core CPU: about 13 minutes per seed. ``--seeds N`` repeats the whole
pipeline (pre-training included) with training seeds 0..N-1 in ``OUT/seed<k>/`` and reports each
number as the mean and sample standard deviation over the seeds, with every seed's value in
``results.json``: a single run's table is not a claim anyone can check, a spread is; ``--resume``
keeps ``OUT`` and reuses every seed whose evaluations are all written (an interrupted demo goes
on where it stopped). Besides the
table it writes ``grid.png`` (test images with the CAM, early and late maps and boxes side by
side, like the paper's Fig. 3) and ``curves.png`` (every loss term and accuracy per epoch) of the
first seed.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..config import DataConfig
from ..data.synthetic import is_stale
from ..fields import positive_int
from ..visualize import plot_training_curves

ROOT = Path(__file__).resolve().parents[2]  # the repository: the demo runs its launch/ scripts

# Shared by every run: a narrow network at 224 px (the paper's input) on the default synthetic set.
COMMON = ["--dataset", "synthetic", "--image-size", "224", "--batch-size", "32", "--val-fraction", "0.1"]
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


def summarize(per_seed: list[dict]) -> dict:
    """``{row: {column key: {"mean", "std", "values"}, "thresholds": [...]}}`` over the seeds'
    results (``std``: sample standard deviation, 0 for one seed)."""
    summary = {}
    for label in per_seed[0]:
        row = {"thresholds": [result[label]["settings"]["threshold"] for result in per_seed]}
        for _, key in COLUMNS:
            values = [result[label][key] for result in per_seed]
            row[key] = {"mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
        summary[label] = row
    return summary


def results_markdown(summary: dict, seeds: int) -> str:
    """The paper's Table 1 layout as a Markdown table (percent): mean +- std over the seeds, and
    the thresholds each seed's validation sweep chose."""
    header = "| Method | " + " | ".join(name for name, _ in COLUMNS) + " | thresholds chosen |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for label, row in summary.items():
        cells = " | ".join(f"{row[key]['mean']:.2f}" + (f" ± {row[key]['std']:.2f}" if seeds > 1 else "")
                           for _, key in COLUMNS)
        lines.append(f"| {label} | {cells} | {', '.join(f'{t:g}' for t in row['thresholds'])} |")
    return "\n".join(lines) + "\n"


def evaluation_path(out: Path, name: str, norm: str) -> Path:
    return out / "eval" / f"{name}_{norm.replace(':', '')}.json"


def finished_seed(out: Path) -> dict | None:
    """``{row label: evaluation result}`` of a seed folder whose every evaluation is written, else None."""
    paths = {label: evaluation_path(out, name, norm) for label, name, norm in ROWS}
    if not all(path.is_file() for path in paths.values()):
        return None
    return {label: json.loads(path.read_text()) for label, path in paths.items()}


def run_seed(out: Path, seed: int, data_root: str) -> dict:
    """Pre-train, train CAM / early / late and evaluate every row with training seed ``seed`` in
    ``out``; ``{row label: evaluation result}``."""
    common = [*COMMON, "--data-root", data_root, "--seed", str(seed)]
    backbone = out / "pretrain" / "backbone.pth"
    run(["launch/pretrain.py", *common, *PRETRAIN, "--out", str(backbone.parent)])
    for name, extra in RUNS:
        init = [] if name == "late" else ["--pretrained", str(backbone)]
        run(["launch/train.py", *common, *TRAIN, *extra, *init, "--out", str(out)])
    results = {}
    for label, name, norm in ROWS:
        path = evaluation_path(out, name, norm)
        run(["launch/evaluate.py", "--checkpoint", str(out / name / "checkpoint.pt"), "--norm", norm,
             "--sweep", "--protocol", "both", "--out", str(path)])
        results[label] = json.loads(path.read_text())
    return results


def seed_results(folder: Path, seed: int, data_root: str, resume: bool) -> dict:
    """The seed's results: reused from ``folder`` when resuming and all written, else run (an
    unfinished folder is cleared first: its runs would refuse to overwrite their checkpoints)."""
    finished = finished_seed(folder) if resume else None
    if finished is not None:
        print(f"seed {seed}: reusing the finished runs in {folder}")
        return finished
    if resume and folder.exists():
        print(f"seed {seed}: clearing the unfinished runs in {folder}")
        shutil.rmtree(folder)
    return run_seed(folder, seed, data_root)


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="run folder (replaced if it exists)")
    parser.add_argument("--data-root", default=DataConfig.data_root)
    parser.add_argument("--seeds", type=positive_int, default=1,
                        help="training seeds 0..N-1, each a whole pipeline; numbers are mean +- std over them")
    parser.add_argument("--resume", action="store_true",
                        help="keep OUT: reuse every seed whose evaluations are all written, redo the others")
    return parser


def demo_main(argv: list[str] | None = None) -> int:
    """``wsol-fast demo``; returns the exit status."""
    args = demo_parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.resume:
        print(f"removing the previous demo run in {out}")
        shutil.rmtree(out)
    if is_stale(ROOT / args.data_root):  # the demo's own generated data, from an older generator
        print(f"removing {args.data_root}: generated by another spec or version of the synthetic generator")
        shutil.rmtree(ROOT / args.data_root)
    start = time.time()
    seed_dirs = [out if args.seeds == 1 else out / f"seed{seed}" for seed in range(args.seeds)]
    per_seed = [seed_results(folder, seed, args.data_root, args.resume) for seed, folder in enumerate(seed_dirs)]
    first = seed_dirs[0]
    run(["launch/evaluate.py", "--checkpoint", str(first / "cam" / "checkpoint.pt"), "--vis-checkpoints",
         str(first / "early" / "checkpoint.pt"), str(first / "late" / "checkpoint.pt"), "--save-vis", "8",
         "--vis-out", str(out / "grid.png"), "--out", str(out / "eval" / "grid_run.json")])
    plot_training_curves([first / name / "log.jsonl" for name in ("pretrain", "cam", "early", "late")],
                         out / "curves.png", title="Demo training curves (synthetic set)")
    summary = summarize(per_seed)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    (out / "results.json").write_text(json.dumps({"seeds": args.seeds, "machine": machine, "rows": summary,
                                                  "per_seed": per_seed}, indent=2))
    table = results_markdown(summary, args.seeds)
    (out / "results.md").write_text(table)
    print(f"\nSynthetic test split, BAS protocol (thresholds chosen on the validation split) and MaxBoxAccV2, "
          f"{args.seeds} seed(s){', mean ± sample std' if args.seeds > 1 else ''}:\n")
    print(table)
    print(f"demo finished in {time.time() - start:.0f} s; results in {out / 'results.json'}, pictures in "
          f"{out / 'grid.png'} and {out / 'curves.png'}")
    return 0
