"""The GPU kit's one entry point, run on the lent machine as one command.

1. Installs the carried wheels (`--wheels`, from `fetch_wheels.py`) into
   `/tmp/site` with pip (no index, no dependencies) and puts that folder
   first on the path of everything it starts.
2. (a) Times the training step at the paper's shape (GPT-2 1.5B-shaped
   teacher, 120M-shaped student, sequence 512, batch 8, bfloat16) for KD
   only and full MTA, under torch and then jax: `benchmarks/
   gpu_step_time.py`, into `step_time.json`; prints the MTA / KD ratios
   (the paper's implementation: 0.26 -> 0.48 s per step, 1.85x).
3. (b) Runs the distillation comparison (`distill.py`: a teacher, then
   SFT, KD and MTA students paired by seed) on the arrays `prepare.py`
   made here, into `distill.json` and `generations.npz`.

Each part runs in its own process under its own time limit, cut from one
deadline (`--deadline-s`), and writes its results as it goes, so a timeout
keeps what finished; `kit.json` says what each part did. README.md gives
the device call and how to score what comes back (`score.py`).

    python3 benchmarks/device/run_kit.py --wheels .whl \\
        --data runs/device_kit --out $OUT --deadline-s 510
    python benchmarks/device/run_kit.py --tiny --data D --out O  # on CPU
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kit  # noqa: E402

STARTED = time.monotonic()
# Part (a)'s share of what is left after the install; part (b) gets the
# rest less a margin to write the summary.
STEP_TIME_SHARE = 0.5
MARGIN_S = 15


def left(deadline_s):
    return deadline_s - (time.monotonic() - STARTED)


def install(wheels, site, env):
    """pip-install `wheels/*.whl` into `site`; return the seconds taken."""
    began = time.monotonic()
    files = sorted(Path(wheels).glob("*.whl"))
    if not files:
        raise SystemExit(
            f"No wheels in {wheels}: run benchmarks/device/fetch_wheels.py "
            "here and carry the folder."
        )
    command = kit.pip_install_command(files, site, python=sys.executable)
    subprocess.run(command, check=True, env=env)
    return time.monotonic() - began


def run_part(name, command, env, timeout):
    """Run one part; never raise; its status for `kit.json`."""
    print(f"== {name}: {timeout:.0f} s", flush=True)
    began = time.monotonic()
    status = {"command": " ".join(command), "timeout_s": round(timeout)}
    if timeout < 30:
        status["status"] = "skipped: no time left"
        return status
    try:
        proc = subprocess.run(command, env=env, timeout=timeout)
        status["status"] = "ok" if proc.returncode == 0 else "failed"
        status["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        status["status"] = "timed out (partial results kept)"
    status["seconds"] = round(time.monotonic() - began, 1)
    print(f"== {name}: {status['status']} ({status['seconds']} s)", flush=True)
    return status


def ratios(step_time_json):
    """`{backend: MTA / KD median step time}` of a step-time report."""
    try:
        report = json.loads(Path(step_time_json).read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for result in report.get("results", []):
        variants = result.get("variants", {})
        kd, mta = variants.get("kd"), variants.get("mta")
        if kd and mta:
            out[result["backend"]] = {
                "kd_s": kd["median_s"],
                "mta_s": mta["median_s"],
                "ratio": mta["median_s"] / kd["median_s"],
            }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", default=None, help="folder of wheels")
    parser.add_argument("--site", default=kit.SITE)
    parser.add_argument("--data", default=kit.DATA_DIR)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline-s", type=float, default=kit.KIT_DEADLINE_S)
    # torch first: no compile, so its figures come early and jax (which
    # compiles each step) gets whatever torch leaves.
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument("--distill-backend", default="jax")
    parser.add_argument("--parts", default="step_time,distill")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    summary = {"deadline_s": args.deadline_s, "tiny": args.tiny, "parts": {}}
    if args.wheels:
        summary["install_s"] = round(install(args.wheels, args.site, env), 1)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (args.site, env.get("PYTHONPATH", "")) if p
        )
    # The repository first, then the installed wheels (the parts add it
    # too; this makes the order the same for every part).
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(kit.REPO), env.get("PYTHONPATH", "")) if p
    )

    def save():
        summary["elapsed_s"] = round(time.monotonic() - STARTED, 1)
        (out / "kit.json").write_text(json.dumps(summary, indent=2) + "\n")

    save()
    parts = args.parts.split(",")
    tiny = ["--tiny"] if args.tiny else []
    if "step_time" in parts:
        share = left(args.deadline_s) - MARGIN_S
        if "distill" in parts:
            share *= STEP_TIME_SHARE
        output = out / "step_time.json"
        command = [
            sys.executable,
            str(HERE.parent / "gpu_step_time.py"),
            "--backends",
            args.backends,
            "--variants",
            "kd,mta",
            # MTA is the point: start it even if KD's compile took long.
            "--try-all",
            "--steps",
            "3" if args.tiny else "10",
            "--warmup",
            "1" if args.tiny else "2",
            # Its own budget, split between the backends, inside ours.
            "--budget-s",
            str(round(share - 10)),
            "--output",
            str(output),
            *tiny,
        ]
        summary["parts"]["step_time"] = run_part(
            "step time", command, env, share
        )
        summary["ratios"] = ratios(output)
        for backend, r in summary["ratios"].items():
            print(
                f"[{backend}] MTA / KD step time: {r['mta_s']:.3f} / "
                f"{r['kd_s']:.3f} s = {r['ratio']:.2f}x (paper 0.48 / "
                "0.26 s = 1.85x)",
                flush=True,
            )
        save()
    if "distill" in parts:
        share = left(args.deadline_s) - MARGIN_S
        command = [
            sys.executable,
            str(HERE / "distill.py"),
            "--data",
            str(args.data),
            "--out",
            str(out),
            # The students stop starting seeds a little before our limit.
            "--budget-s",
            str(round(share - 20)),
            *tiny,
        ]
        part_env = dict(env, KERAS_BACKEND=args.distill_backend)
        summary["parts"]["distill"] = run_part(
            "distillation", command, part_env, share
        )
        save()
    save()
    print(json.dumps(summary, indent=2))
    failed = [n for n, p in summary["parts"].items() if p["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
