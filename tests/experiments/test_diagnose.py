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


def study_and_diagnosis(overrides, profile="smoke"):
    """The optimization study's numbers and regime.diagnose's for the same MLP runs.

    Same data (the study's loader), same initialisation (``key(seed)``), NGD at η = 1 with
    the study's damping, steps, checkpoints and Lanczos steps. Returns one dict per
    (width, seed) with both sides' λ₀, R and C′ at the checkpoints.
    """
    import jax.numpy as jnp

    from ntk_limits import models
    from ntk_limits_experiments import runner
    from ntk_limits_experiments.optimization.study import STUDY, expand, load_data

    config = runner.prepare_config(STUDY, profile, overrides)
    rows = []
    for run in expand(config):
        m = STUDY.execute(run, lambda done, total: None)
        x, y, _ = load_data(run.dataset, run.data_dir, run.n_train, run.pool)
        x = jnp.asarray(x.reshape(len(x), -1))
        arch = models.build(run.network)
        i_lr = run.ngd_lrs.index(1.0)
        for s, seed in enumerate(run.seeds):
            _, params = arch.init_fn(jax.random.key(seed), (-1, x.shape[1]))
            d = regime.diagnose(
                arch.apply_fn, params, x, jnp.asarray(y),
                train=regime.ngd(1.0, run.ngd_steps, damping=run.ngd_damping),
                checkpoints=run.ngd_checkpoints, lanczos_iters=run.lanczos_iters,
            )  # fmt: skip
            rows.append({
                "width": run.network.width, "seed": seed, "steps": list(run.ngd_checkpoints),
                "study_lambda": m["lambda_zero_upper"][s], "ours_lambda": d.lambda_zero,
                "study_radius": m["radius"][s], "ours_radius": d.radius,
                "study_c_prime": m["ngd"]["c_prime"][i_lr][s], "ours_c_prime": list(d.c_prime),
                "study_loss": m["ngd"]["loss"][i_lr][s][-1], "ours_loss": float(d.losses[-1]),
                "verdict": d.verdict,
            })  # fmt: skip
    return rows


def test_diagnosis_agrees_with_the_optimization_study():
    # The study and diagnose reach λ₀, R and C′ through the same library functions but
    # their own programs (the study vmaps seeds and runs NGD in float64 beside GD and
    # Adam): λ₀ agrees to float64 round-off of the Gram (1e-8); R divides the float32
    # residual ‖y − u₀‖ (each side's own float32 forward pass: 1e-6) by √λ₀; C′ uses
    # float32 Jacobian differences after float64 NGD, so 1e-3 (Lanczos on float32).
    overrides = ["mlp_widths=32", "jacobian_norm=lanczos", "lanczos_iters=8",
                 "ngd_float64=true", "ngd_lrs=0.5,1.0", "cnn_widths=", "mlp_depths=1"]  # fmt: skip
    rows = study_and_diagnosis(overrides)
    assert [(r["width"], r["seed"]) for r in rows] == [(32, 0), (32, 1)]
    for r in rows:
        np.testing.assert_allclose(r["ours_lambda"], r["study_lambda"], rtol=1e-8)
        np.testing.assert_allclose(r["ours_radius"], r["study_radius"], rtol=1e-6)
        np.testing.assert_allclose(r["ours_c_prime"], r["study_c_prime"], rtol=1e-3)
        np.testing.assert_allclose(r["ours_loss"], r["study_loss"], rtol=1e-6)
