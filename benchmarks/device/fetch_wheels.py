"""Download the wheels the GPU kit installs on the device, and check size.

The lent machine has no network, no keras and no keras-hub (see README.md).
This script, run here where the package registry is reachable, downloads
exactly the missing wheels for CPython 3.12 on manylinux x86-64, at the
versions installed in this environment, into `.whl/` (ignored by git):

    python benchmarks/device/fetch_wheels.py

It prints each wheel's size and the total, and exits with an error when the
wheels, or the wheels with the prepared data and the tracked tree, would
not fit in what one device call carries. `--check` only measures what is
already there.
"""

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kit  # noqa: E402

PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def pinned(names=kit.WHEELS):
    """`NAME==VERSION` of each wheel, at the version installed here."""
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def download_command(requirements, dest):
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return command + ["-d", str(dest), *requirements]


def tracked_size(repo=kit.REPO):
    """Bytes of the files git tracks in `repo`."""
    out = subprocess.run(
        ["git", "ls-files", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    names = [n for n in out.decode().split("\0") if n]
    return sum(kit.folder_size(Path(repo) / n) for n in names)


def check(dest, data=kit.REPO / kit.DATA_DIR, tracked_bytes=None):
    """Print the sizes; raise `ValueError` over budget or with a wheel
    missing or doubled. Returns the wheels' bytes.

    Args:
        dest: the folder of wheels.
        data: the prepared data folder that travels with them.
        tracked_bytes: the tracked tree's bytes (measured with git when
            `None`).
    """
    wheels = sorted(Path(dest).glob("*.whl"))
    for w in wheels:
        print(f"  {w.name}: {w.stat().st_size / kit.MIB:.2f} MiB")
    names = [w.name.split("-")[0].lower().replace("_", "-") for w in wheels]
    missing = sorted(set(kit.WHEELS) - set(names))
    doubled = sorted({n for n in names if names.count(n) > 1})
    if missing or doubled:
        raise ValueError(
            f"{dest}: wheels missing {missing}, doubled {doubled}: pip "
            "installs one version of each. Delete the folder and run "
            "fetch_wheels.py again."
        )
    wheel_bytes = sum(w.stat().st_size for w in wheels)
    print(kit.check_budget("wheels", wheel_bytes, kit.WHEEL_BUDGET))
    if tracked_bytes is None:
        tracked_bytes = tracked_size()
    total = wheel_bytes + kit.folder_size(data) + tracked_bytes
    print(kit.check_budget("all that travels", total, kit.TRAVEL_BUDGET))
    return wheel_bytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=str(kit.REPO / kit.WHEEL_DIR))
    parser.add_argument(
        "--check", action="store_true", help="only measure, download nothing"
    )
    args = parser.parse_args(argv)
    if not args.check:
        requirements = pinned()
        print("downloading", " ".join(requirements), flush=True)
        subprocess.run(download_command(requirements, args.dest), check=True)
    return kit.exit_status(check, args.dest)


if __name__ == "__main__":
    sys.exit(main())
