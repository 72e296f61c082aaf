"""install/missing.py: what the project adds to an existing environment."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "install" / "missing.py"


def _missing(tmp_path, base: str):
    (tmp_path / "base.txt").write_text(base, encoding="utf-8")
    args = [sys.executable, SCRIPT, ROOT / "constraints.txt", "--base", tmp_path / "base.txt"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _pins(text: str) -> dict[str, str]:
    return dict(line.split("==") for line in text.splitlines())


def test_a_gpu_host_gets_only_what_it_lacks(tmp_path):
    # The H200 image: jax 0.11.2 (CUDA), flax, optax, chex preinstalled.
    host = "jax==0.11.2\njaxlib==0.11.2\nflax==0.12.1\noptax==0.2.6\nchex==0.1.91\nnumpy==2.3.0\n"
    out = _missing(tmp_path, host)
    assert out.returncode == 0, out.stderr
    need = _pins(out.stdout)
    assert not {"jax", "jaxlib", "flax", "optax", "chex", "numpy"} & set(need)
    pinned = _pins((ROOT / "constraints.txt").read_text())
    assert need["neural-tangents"] == "0.6.5"
    assert need["tensorflow-datasets"] == pinned["tensorflow-datasets"]
    assert len(need) == len(pinned) - 6  # every other pin, unchanged


@pytest.mark.parametrize("base", ["jax==0.9.2\njaxlib==0.9.2\n", "jax==0.10.2\njaxlib==0.12.0\n"])
def test_a_jax_outside_the_supported_range_is_refused_in_one_line(tmp_path, base):
    out = _missing(tmp_path, base)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is installed but ntk-limits supports" in lines[0], out.stderr
    assert "; allowed: " in lines[0]


def test_names_are_compared_in_canonical_form(tmp_path):
    out = _missing(tmp_path, "Tensorflow_Datasets==4.9.10\nscikit.learn==1.9.1\n")
    assert out.returncode == 0, out.stderr
    assert not {"tensorflow-datasets", "scikit-learn"} & set(_pins(out.stdout))
