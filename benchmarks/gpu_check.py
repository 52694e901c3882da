"""The GPU check: one command that, on a machine with one NVIDIA GPU and no network, builds and
tests the CUDA paths and measures what the README needs, writing one JSON and a markdown table.

Parts (each a subprocess with its own time limit, so one failure leaves the others' results):
  cuda_tests  the extension built with CUDA (``pip install -e .``, ``FORCE_CUDA=1``, sm_90), then
              the extension, Triton-kernel (split launches, compiled ops) and device tests
              (CUDA ops against the CPU ops and the references, fp32 and bf16, forward and
              backward)
  kernels     ``benchmarks/kernels.py``: each Triton op against eager and ``torch.compile``
  pipeline    ``benchmarks/pipeline.py`` at C=1000, 224 px, torch loader: bf16 + channels_last at
              batch 128 and 256, and fp32 at 128 (each with the BAS-style baseline beside it)
  deepspeed   ``deepspeed --num_gpus 1 launch/train.py``: one epoch (46 steps) of the pipeline's set
  eval_ops    percentile-max normalization + largest-component boxes of 50,000 maps (224 px) at
              1,000 thresholds on the GPU, in chunks (in this process: seconds, no time limit)
``--dry-run`` runs every part at tiny sizes on the CPU (Triton interpreted, the extension as
built, the test selection collected rather than run: the CPU test suite runs it; one pipeline
configuration, bf16 + channels_last), so CI keeps this script working. ``--parts`` picks parts. Targets (the pipeline issue): 5,000 images/s for
the early stage at C=1000 in bf16 with data wait under 5%; every Triton op at least 2x eager and
no slower than ``torch.compile``; 50,000 maps at 1,000 thresholds in under 5 s.

    python benchmarks/gpu_check.py --out runs/gpu_check      # see docs/gpu-check.md
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PARTS = ("cuda_tests", "kernels", "pipeline", "deepspeed", "eval_ops")
CUDA_TESTS = ["tests/test_ext.py", "tests/test_kernels_foreground_epilogue.py",
              "tests/test_kernels_background_product.py", "tests/test_kernels_guided_score.py",
              "tests/test_kernels_class_sums.py", "tests/test_kernels_mean_map_l1.py",
              "tests/test_kernels_layouts.py", "tests/test_kernels_split_grid.py",
              "tests/test_kernels_compile.py", "tests/test_devices.py"]
# Sizes of the GPU run and of the dry run.
PIPELINE_RUNS = {  # name -> (precision, batch, channels_last)
    "bf16_cl_b128": ("bf16", 128, True), "bf16_cl_b256": ("bf16", 256, True), "fp32_b128": ("fp32", 128, False)}
# One generated set serves every pipeline run and the DeepSpeed run (generating JPEGs takes ~10-40
# ms each on one core, so it is small: 1,000 classes x 6 images of 128 px; batch 256 wraps to a
# second epoch). The DeepSpeed run trains one epoch of it (46 steps of 128).
GPU_DATA = ["--synthetic-image-size", "128"]
GPU = dict(pipeline=["--classes", "1000", "--per-class", "6", "--image-size", "224", "--width", "1.0", "--steps", "20",
                     "--warmup", "5", "--repeats", "2", "--workers", "12", *GPU_DATA],
           train=["--synthetic-classes", "1000", "--synthetic-train-per-class", "6", "--synthetic-test-per-class", "1",
                  *GPU_DATA, "--image-size", "224", "--batch-size", "128", "--width", "1.0", "--workers", "12"],
           eval_maps=50_000, eval_thresholds=1000, eval_chunk=1000, map_size=224)
DRY = dict(pipeline=["--classes", "3", "--per-class", "4", "--image-size", "48", "--width", "0.25", "--steps", "1",
                     "--warmup", "1", "--repeats", "1", "--workers", "0", "--synthetic-image-size", "64"],
           train=["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "1",
                  "--synthetic-image-size", "64", "--image-size", "48", "--batch-size", "4", "--width", "0.25",
                  "--workers", "0"],
           eval_maps=24, eval_thresholds=10, eval_chunk=8, map_size=32)
DATA = "synthetic_data"  # under --out: the set the pipeline runs generate and the DeepSpeed run reads
# Seconds each subprocess may run (about 9 minutes in all, inside one 10-minute device call).
LIMITS_S = {"cuda_build": 140, "cuda_tests": 110, "kernels": 60, "generate": 60, "pipeline_run": 50, "deepspeed": 80}


def run(command: list[str], log: Path, limit_s: int, env: dict | None = None) -> dict:
    """Run ``command`` in the repository root, output to ``log`` -> {rc, seconds, command}. The
    child starts its own runs: a launcher's (or this process's) rendezvous variables are left out."""
    from wsol_fast.engine.distributed import LAUNCHER_VARIABLES

    inherited = {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        try:
            rc = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=limit_s,
                                env={**inherited, **(env or {})}).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return {"command": " ".join(command), "rc": rc, "seconds": time.perf_counter() - start}


def cuda_tests(args, out: Path) -> dict:
    log, steps = out / "cuda_tests.log", []
    if args.dry_run:
        steps.append(run([sys.executable, "-m", "pytest", "--collect-only", "-q", *CUDA_TESTS], log,
                         LIMITS_S["cuda_tests"]))
    else:
        steps.append(run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                          "--use-pep517", "-e", "."], log, LIMITS_S["cuda_build"],
                         env={"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "9.0", "MAX_JOBS": str(os.cpu_count())}))
        if steps[-1]["rc"] == 0:
            steps.append(run([sys.executable, "-m", "pytest", "-q", "-x", *CUDA_TESTS], log, LIMITS_S["cuda_tests"]))
    return {"steps": steps}


def kernels(args, out: Path) -> dict:
    command = [sys.executable, "benchmarks/kernels.py", "--out", str(out / "kernels.json")]
    command += ["--dry-run", "--warmup", "1", "--iters", "1"] if args.dry_run else []
    step = run(command, out / "kernels.log", LIMITS_S["kernels"])
    return {"steps": [step], "report": read_json(out / "kernels.json")}


def pipeline(args, out: Path) -> dict:
    sizes, steps, reports = DRY if args.dry_run else GPU, [], {}
    runs = dict(list(PIPELINE_RUNS.items())[:1]) if args.dry_run else PIPELINE_RUNS  # dry: the bf16 path only
    for name, (precision, batch, channels_last) in runs.items():
        if args.dry_run:
            batch = 4
        path = out / f"pipeline_{name}.json"
        command = [sys.executable, "benchmarks/pipeline.py", *sizes["pipeline"], "--loader", "torch",
                   "--precision", precision, "--batch-size", str(batch), "--device", args.device,
                   "--data-root", str(out / DATA), "--out", str(path)]
        limit = LIMITS_S["pipeline_run"] + (LIMITS_S["generate"] if not steps else 0)  # the first one generates
        steps.append(run(command + ["--channels-last"] * channels_last, out / "pipeline.log", limit))
        reports[name] = read_json(path)
    return {"steps": steps, "reports": reports}


def deepspeed_run(args, out: Path) -> dict:
    sizes = DRY if args.dry_run else GPU
    launcher = [sys.executable] + ([] if args.dry_run else ["-m", "deepspeed.launcher.runner", "--num_gpus", "1"])
    command = [*launcher, "launch/train.py", "--dataset", "synthetic", "--data-root", str(out / DATA),
               *sizes["train"], "--epochs", "1", "--loader", "torch", "--precision", "bf16" if not args.dry_run
               else "fp32", "--out", str(out / "train_run"), "--log-every", "10"]
    step = run(command, out / "deepspeed.log", LIMITS_S["deepspeed"])
    log = out / "train_run" / "early" / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"steps": [step], "epochs": records}


def eval_ops(args, out: Path) -> dict:
    """Normalize + boxes of many random smooth maps on ``args.device``, in chunks, timed."""
    from wsol_fast.ops import evaluation

    sizes = DRY if args.dry_run else GPU
    device = torch.device(args.device)
    thresholds = torch.linspace(0, 1, sizes["eval_thresholds"] + 1)[:-1].tolist()
    generator = torch.Generator(device=device).manual_seed(0)
    side = sizes["map_size"]
    coarse = torch.rand(sizes["eval_chunk"], 1, side // 8, side // 8, generator=generator, device=device)
    maps = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")[:, 0].contiguous()
    evaluation.largest_component_boxes(evaluation.normalize(maps, "percentile:99"), thresholds)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    chunks = -(-sizes["eval_maps"] // sizes["eval_chunk"])
    start = time.perf_counter()
    for _ in range(chunks):
        boxes = evaluation.largest_component_boxes(evaluation.normalize(maps, "percentile:99"), thresholds)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"steps": [{"command": "in process", "rc": 0, "seconds": seconds}], "maps": chunks * len(maps),
            "thresholds": len(thresholds), "seconds": seconds, "boxes_shape": list(boxes.shape),
            "extension": evaluation.largest_component_boxes.backend_for(maps) == "ext"}


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """(part, status, figures) per part, for the markdown table."""
    rows = []
    for part, result in results.items():
        steps = result.get("steps", [])
        ok = bool(steps) and all(step["rc"] == 0 for step in steps)
        figures = ""
        if part == "pipeline":
            figures = "; ".join(f"{name}: {report['rows']['ours']['images_per_s']:.0f} img/s, data wait "
                                f"{100 * report['rows']['ours']['data_wait_fraction']:.1f}%, x{report['speedup']:.2f} "
                                "baseline" for name, report in result["reports"].items() if report)
        elif part == "kernels" and result.get("report"):
            figures = "; ".join(f"{row['op']} {row['dtype']}: x{row['speedup_vs_eager']:.2f} eager, "
                                f"x{row['speedup_vs_compile']:.2f} compile" for row in result["report"]["rows"])
        elif part == "eval_ops" and ok:
            figures = f"{result['maps']} maps x {result['thresholds']} thresholds in {result['seconds']:.2f} s"
        elif part == "deepspeed" and result.get("epochs"):
            figures = f"{result['epochs'][-1]['images_per_s']:.0f} img/s over the epoch"
        rows.append((part, "ok" if ok else "FAILED", figures))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes on the CPU")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu_check.py needs a CUDA GPU (none is visible); use --dry-run on a CPU")
    args.device = "cpu" if args.dry_run else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = {"cuda_tests": cuda_tests, "kernels": kernels, "pipeline": pipeline, "deepspeed": deepspeed_run,
            "eval_ops": eval_ops}
    results, start = {}, time.perf_counter()
    for part in args.parts:
        print(f"gpu_check: {part} ...", flush=True)
        try:
            results[part] = jobs[part](args, args.out)
        except Exception as error:  # noqa: BLE001 - one part's failure is reported, the others still run
            results[part] = {"steps": [{"command": part, "rc": f"{type(error).__name__}: {error}", "seconds": 0}]}
        print(f"gpu_check: {part} done", flush=True)
    device = "dry run on the CPU" if args.dry_run else torch.cuda.get_device_name()
    report = {"device": device, "torch": torch.__version__, "seconds": time.perf_counter() - start,
              "parts": results}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    lines = [f"GPU check on {device} (torch {torch.__version__}), {report['seconds']:.0f} s", "",
             "| part | status | figures |", "|---|---|---|"]
    lines += [f"| {part} | {status} | {figures} |" for part, status, figures in summary_rows(results)]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return report


if __name__ == "__main__":
    report = main()
    sys.exit(0 if all(status == "ok" for _, status, _ in summary_rows(report["parts"])) else 1)
