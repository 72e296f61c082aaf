"""What ntk-limits needs beyond an existing environment: run by that environment's Python.

    python install/missing.py constraints.txt [--base FREEZE] [--out FILE]

Reads the project's pinned closure (``constraints.txt``) and writes the pins of the
packages the environment does not have (``--base``: a ``pip freeze``-style file that
describes another environment, e.g. a GPU host's, instead of this interpreter's). Packages
already installed are left out, so ``pip install -c <output> .`` keeps them as they are;
pip still upgrades one that is outside the project's range, except jax and jaxlib: an
installed jax or jaxlib outside the supported range is refused in one line (exit 2), so
that a CUDA build is never replaced by a CPU one behind the user's back.

Standard library only (plus pip's vendored ``packaging``), so that it runs on a bare
interpreter.
"""

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # a bare interpreter: pip always carries it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
KEPT = ("jax", "jaxlib")  # never replaced: the user's accelerator build


def canonical(name: str) -> str:
    """PEP 503 name: ``Foo_bar`` -> ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a ``name==version`` file (comments and options skipped).

    A line with a name alone says the package is there in some version (``""``).
    """
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            out[canonical(name.split("[")[0].strip())] = version.strip()
    return out


def installed() -> dict[str, str]:
    """``name -> version`` of every distribution this interpreter can import."""
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def supported(name: str) -> Requirement:
    """The project's requirement on ``name`` (from pyproject.toml)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for text in project["project"]["dependencies"]:
        req = Requirement(text)
        if canonical(req.name) == name:
            return req
    raise KeyError(name)


def main(argv: list[str] | None = None) -> int:
    """Writes the missing pins; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("constraints", type=Path)
    parser.add_argument("--base", type=Path, help="a pip-freeze file instead of this env")
    parser.add_argument("--out", type=Path, help="default: standard output")
    parser.add_argument("--runtime", action="store_true", help="leave out the test tools")
    args = parser.parse_args(argv)
    have = pins(args.base) if args.base else installed()
    for name in KEPT:
        req = supported(name)
        if have.get(name) and Version(have[name]) not in req.specifier:
            print(
                f"missing.py: {name} {have[name]} is installed but ntk-limits supports "
                f"{name}{req.specifier}; allowed: an environment with {name}{req.specifier} "
                f"(or none, and the pinned {name} is installed)",
                file=sys.stderr,
            )
            return 2
    need = {n: v for n, v in pins(args.constraints).items() if n not in have}
    if args.runtime:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        tools = project["project"]["optional-dependencies"]["test"]
        for name in (canonical(Requirement(t).name) for t in tools):
            need.pop(name, None)
    text = "".join(f"{n}=={v}\n" for n, v in sorted(need.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
