"""``ntk-limits diagnose`` on user models from files outside the project, offline."""

import json
import textwrap

import jax
import numpy as np
import pytest

from ntk_limits import regime
from ntk_limits_experiments.cli import main
from tests.experiments.test_cli import _assert_one_line_error

LINEN = """
import flax.linen as nn


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(32)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(10)(nn.relu(x))


def make():
    return Net(), (64,)
"""

APPLY_FN = """
from ntk_limits import models


def make(key):
    arch = models.mlp(width=64, depth=1, out_dim=3)
    _, params = arch.init_fn(key, (-1, 4))
    return arch.apply_fn, params, arch.kernel_fn
"""


@pytest.fixture(autouse=True)
def _standard_promotion():
    # The command runs in a user's process, with JAX's standard dtype promotion; flax's
    # BatchNorm promotes with float32 internally, which the suite's strict mode rejects.
    with jax.numpy_dtype_promotion("standard"):
        yield


def _user_file(tmp_path, text, name="user_model.py"):
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir()
    path.write_text(textwrap.dedent(text))
    return path


def test_user_linen_module_from_a_file_outside_the_project(tmp_path, capsys):
    path = _user_file(tmp_path, LINEN)
    work = tmp_path / "out"
    code = main(["diagnose", f"{path}:make", "--data", "digits", "--n", "20", "--n-test", "8",
                 "--steps", "6", "--checkpoints", "2", "--workdir", str(work)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((work / "diagnosis.json").read_text())
    assert record["verdict"] in regime.VERDICTS
    assert record["n"] == 20 and record["outputs"] == 10 and record["steps"] == [3, 6]
    assert record["num_params"] == 64 * 32 + 32 + 2 * 32 + 32 * 10 + 10
    report = (work / "DIAGNOSIS.md").read_text()
    assert "flax Linen Net (BatchNorm, if any: batch statistics)" in report
    assert record["verdict"] in report and "examples coupled" in report
    assert (work / "steps.png").stat().st_size > 0 and (work / "spectrum.png").stat().st_size > 0
    assert not list(work.glob(".diagnosis-*"))  # the temporary folder is gone


def test_npz_data_and_an_infinite_width_kernel(tmp_path, capsys):
    path = _user_file(tmp_path, APPLY_FN)
    rng = np.random.default_rng(0)
    data = tmp_path / "arrays.npz"
    np.savez(data, x=rng.normal(size=(30, 4)).astype(np.float32), y=rng.integers(0, 3, 30))
    work = tmp_path / "out"
    code = main(["diagnose", f"{path}:make", "--data", str(data), "--n", "12", "--n-test", "6",
                 "--steps", "4", "--optimizer", "ngd", "--checkpoints", "2",
                 "--workdir", str(work)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((work / "diagnosis.json").read_text())
    assert record["infinite_kernel_distance"] > 0
    assert record["infinite_prediction_gap"] is not None
    assert "## Infinite width" in (work / "DIAGNOSIS.md").read_text()


BAD = {
    "not MODULE:FACTORY": (["nocolon"], "is not MODULE:FACTORY"),
    "missing file": (["/no/such/file.py:make"], "no file '/no/such/file.py'"),
    "no such function": (["{linen}:nosuch"], "has no function 'nosuch'; allowed: Net, make"),
    "unknown data": (["{linen}:make", "--data", "nosuch"], "unknown data 'nosuch'"),
    "too many inputs": (["{linen}:make", "--n", "5000"], "asked for 5000; allowed: at most"),
    "adam without lr": (["{linen}:make", "--optimizer", "adam"], "--optimizer adam needs --lr"),
    "model rejects the inputs": (["{apply}:make"], "the model fails on inputs of shape (20, 64)"),
    "wrong outputs": (["{apply}:make", "--data", "{five}"], "allowed: (n, 5), one output per"),
    "zero steps": (["{linen}:make", "--n", "0"], "'0' is not a positive integer"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    linen = _user_file(tmp_path, LINEN, "linen_model.py")
    apply = linen.parent / "apply_model.py"
    apply.write_text(textwrap.dedent(APPLY_FN))
    args, message = BAD[case]
    five = tmp_path / "five_classes.npz"  # 4 features as the apply_fn model, 5 classes
    np.savez(five, x=np.zeros((90, 4), np.float32), y=np.arange(90) % 5)
    args = [a.format(linen=linen, apply=apply, five=five) for a in args]
    defaults = {"--data": "digits", "--n": "20"}
    args += [v for flag, value in defaults.items() if flag not in args for v in (flag, value)]
    work = tmp_path / "out"
    code = main(["diagnose", *args, "--flatten", "--steps", "2", "--workdir", str(work)])
    _assert_one_line_error(code, capsys.readouterr().err, message)
    assert not work.exists()
