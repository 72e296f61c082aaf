"""Writes an offline bundle: the wheels of every pinned package a base environment lacks.

    python install/wheels.py NEEDS.txt --dest .whl --python-version 3.12 [--platform P ...]

``NEEDS.txt`` is ``install/missing.py``'s output (``name==version`` lines). Each package is
downloaded as a binary wheel for the target Python and platforms; a package published
only as a source archive (pure Python, e.g. ``promise``) is built into a wheel here. The
project's own wheel is added. Prints the bundle's size; exits 1 naming any package that
could not be bundled.
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip


def _pip(*args: str) -> bool:
    cmd = [sys.executable, "-m", "pip", "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Downloads or builds each wheel; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("needs", type=Path)
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", action="append", help=f"default: {', '.join(PLATFORMS)}")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    target = ["--python-version", args.python_version, "--implementation", "cp"]
    for platform in args.platform or PLATFORMS:
        target += ["--platform", platform]
    failed = []
    for pin in args.needs.read_text(encoding="utf-8").split():
        binary = ["--no-deps", "--only-binary=:all:", *target, "-d", str(args.dest)]
        got = _pip("download", *binary, pin)
        if not got:  # a source-only release: build its (pure-Python) wheel here
            got = _pip("wheel", "--no-deps", "-w", str(args.dest), pin)
        print(f"{pin}: {'ok' if got else 'NOT BUNDLED'}")
        if not got:
            failed.append(pin)
    if not _pip("wheel", "--no-deps", "-w", str(args.dest), str(ROOT)):
        failed.append("ntk-limits")
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.dest}")
    if failed:
        print(f"wheels.py: could not bundle {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
