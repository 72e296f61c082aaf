"""The neural-tangents compatibility layer: every entry point we use, on current JAX.

Each check compares neural-tangents' result with one computed without it, so a silent
break of the layer on a future JAX release fails here first.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import kernels, models
from ntk_limits.kernels import _nt


def test_importing_ntk_limits_never_imports_tensorflow():
    code = (
        "import sys, ntk_limits, ntk_limits.kernels, ntk_limits.models, ntk_limits.data;"
        "ntk_limits.mlp(4);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported';"
        "assert 'neural_tangents' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_only_the_adapter_imports_neural_tangents():
    from pathlib import Path

    src = Path(kernels.__file__).parents[1]
    importers = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if any(
            line.lstrip().startswith(("import neural_tangents", "from neural_tangents"))
            for line in p.read_text().splitlines()
        )
    ]
    assert importers == ["kernels/_nt.py"]


def test_running_on_the_current_jax_line():
    major, minor = (int(v) for v in jax.__version__.split(".")[:2])
    assert (major, minor) >= (0, 10), jax.__version__
    assert _nt.__version__ == "0.6.5"


@pytest.mark.parametrize("algorithm", kernels.ALGORITHMS)
def test_kernel_calls_print_nothing(capfd, algorithm):
    """Nothing on stdout or stderr from a kernel call with any algorithm (neural-tangents'
    AUTO prints ``impl=…, flops=…`` per algorithm; a library must not), nor from the
    infinite-width kernel of the same network."""
    arch = models.mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    params = arch.init_fn(jax.random.key(1), x.shape)[1]
    jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm=algorithm))(x, None, params)
    arch.kernel_fn(x, None, "ntk")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _two_outputs(p, x):
    """A function whose output is a pytree: a dict of a (n, 3) and a (n, 1) array."""
    return {"y": jnp.tanh(x @ p["a"]), "z": (x @ p["b"] * jnp.sum(p["a"]))[:, None]}


@pytest.mark.parametrize("algorithm", kernels.ALGORITHMS)
@pytest.mark.parametrize("trace", [True, False])
def test_ntk_of_a_function_with_pytree_outputs(x64, algorithm, trace):
    """Every algorithm, on a dict of two outputs, against the explicit Jacobians of each.

    Neural-tangents unravels its basis into the output pytree with shapes only: the
    suite's ``filterwarnings = error`` turns a ``jnp.size`` of a ``ShapeDtypeStruct``
    (deprecated) into a failure here.
    """
    w = {"a": jax.random.normal(jax.random.key(2), (4, 3)), "b": jnp.arange(4.0)}
    x1 = jax.random.normal(jax.random.key(3), (5, 4))
    x2 = jax.random.normal(jax.random.key(4), (2, 4))
    got = kernels.empirical_ntk_fn(_two_outputs, algorithm=algorithm, trace=trace)(x1, x2, w)

    def jacobian(x, k):  # output k's Jacobian, (n, k_i, P), the parameters flattened
        j = jax.jacrev(lambda p: _two_outputs(p, x)[k])(w)
        shape = _two_outputs(w, x)[k].shape
        return jnp.concatenate([j[name].reshape(*shape, -1) for name in ("a", "b")], axis=-1)

    for k in ("y", "z"):
        full = jnp.einsum("iap,jbp->ijab", jacobian(x1, k), jacobian(x2, k))
        want = jnp.einsum("ijaa->ij", full) / full.shape[-1] if trace else full
        # float64, the same sums in another order.
        np.testing.assert_allclose(got[k], want, rtol=1e-10, atol=1e-12)


def test_auto_implementation_counts_flops_with_todays_cost_analysis(x64, monkeypatch):
    arch = models.mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    params = arch.init_fn(jax.random.key(1), x.shape)[1]
    flops = []

    def counted(*args, **kwargs):  # the adapter's counter, recording what it returns
        flops.append(_nt._get_flops(*args, **kwargs))
        return flops[-1]

    monkeypatch.setattr(_nt._nt_empirical, "_get_flops", counted)
    auto = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm="auto"))(x, None, params)
    assert len(flops) == 3 and min(flops) > 0, flops  # one positive count per algorithm
    ref = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference"))
    # float64: the same kernel by a different contraction (see test_empirical).
    np.testing.assert_allclose(auto, ref(x, None, params), rtol=1e-10)


def test_empirical_ntk_vp_fn_and_batch_and_monte_carlo_entry_points(x64):
    arch = models.mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (4, 3))
    params = arch.init_fn(jax.random.key(1), x.shape)[1]
    v = jax.random.normal(jax.random.key(2), (4, 2))
    ours, theirs = jax.jit(
        lambda v: (
            kernels.ntk_vp_fn(arch.apply_fn, params, x)(v),
            _nt.empirical_ntk_vp_fn(arch.apply_fn, x, None, params)(v),
        )
    )(v)
    np.testing.assert_allclose(theirs, ours, rtol=1e-10)  # same products, float64
    batched = _nt.batch(arch.kernel_fn, batch_size=2)(x, None, "ntk")
    # Batches see x2 as a separate array, so diagonal entries take the off-diagonal arccos
    # path (guarded by tiny epsilons): measured 1.3e-9 relative in float64.
    want = jax.jit(lambda a: arch.kernel_fn(a, None, "ntk"))(x)
    np.testing.assert_allclose(batched, want, rtol=1e-7)
    mc = _nt.monte_carlo_kernel_fn(arch.init_fn, arch.apply_fn, jax.random.key(3), 4)
    assert mc(x, None, "ntk").shape == (4, 4)


def _sliced(p, x):
    """Parameters sliced three ways (slice, dynamic_slice, gather-free indexing)."""
    w = jax.lax.dynamic_slice(p, (2,), (3,))
    return jnp.tanh(x * p[0] + p[1]) @ jnp.stack([w, w**2, p[:3]], axis=1)


def _scanned(p, x):
    """A three-step recurrence in ``lax.scan`` (single output), then a readout."""

    def step(h, _):
        return jnp.tanh(h * p[0] + x * p[1]), None

    h, _ = jax.lax.scan(step, x, None, length=3)
    return h @ p[2:].reshape(3, 2)


@pytest.mark.parametrize("fn", [_sliced, _scanned], ids=["slice", "scan"])
def test_structured_ntk_of_functions_with_moved_transposes(x64, fn):
    # slice/dynamic_slice/scan transposes live in ad.fancy_transposes on current JAX;
    # the adapter's jax.vjp fallback must give the dense-Jacobian kernel.
    x = jax.random.normal(jax.random.key(0), (4, 3))
    p = jax.random.normal(jax.random.key(1), (8,))
    with warnings.catch_warnings():  # nt notes it has no *structured* rule for these
        warnings.filterwarnings("ignore", "No Jacobian rule found", UserWarning)
        got = jax.jit(kernels.empirical_ntk_fn(fn, trace=False))(x, None, p)
    want = jax.jit(kernels.empirical_ntk_fn(fn, algorithm="reference", trace=False))(x, None, p)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)  # float64 round-off


_WITHOUT_NT = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "neural_tangents":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
import ntk_limits.kernels
"""


def test_without_neural_tangents_the_import_error_says_what_to_run():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_NT], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ntk-limits needs neural-tangents 0.6.5")
    assert last.endswith(f"run: {_nt.INSTALL}")
