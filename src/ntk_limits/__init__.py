"""ntk-limits: does the neural tangent kernel describe this network?

A JAX library that puts finite networks beside their kernel-regime counterparts
(linearisation, infinite-width NTK) and measures where the NTK view stops holding,
re-measuring Wenger, Dangel & Kristiadi (2023), arXiv:2310.00137.

The public surface::

    from ntk_limits import models, kernels
    arch = models.mlp(width=512, depth=2, out_dim=10)
    _, params = arch.init_fn(key, (-1, 784))
    k_emp = kernels.empirical_ntk_fn(arch.apply_fn)(x, None, params)   # (n, n)
    k_inf = arch.kernel_fn(x, None, "ntk")                             # (n, n)
    kernels.kernel_alignment(k_emp, k_inf)

    from ntk_limits import regime                  # does the NTK describe any model?
    d = regime.diagnose(apply_fn, params, x, y, train=regime.gd(None, 100), x_test=x_test)
    d.verdict, d.summary

Sub-modules and names are imported on first use, so ``import ntk_limits`` (and the
``ntk-limits`` command line) starts without loading JAX.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "bandits",
    "continual",
    "data",
    "flax_models",
    "kernels",
    "linearize",
    "models",
    "ngd_conditions",
    "optimization",
    "parallel",
    "regime",
    "training",
)
_NAMES = {
    "Architecture": "models",
    "Network": "models",
    "build": "models",
    "cnn": "models",
    "mlp": "models",
    "num_params": "models",
    "wide_resnet": "models",
    "empirical_ntk_fn": "kernels",
    "gram_spectrum": "kernels",
    "jacobian_change": "kernels",
    "kernel_alignment": "kernels",
    "kernel_change": "kernels",
    "linearization_error": "kernels",
    "ntk_vp_fn": "kernels",
    "gp_regression": "linearize",
    "gradient_descent_mse": "linearize",
    "ntk_gp_ensemble": "linearize",
    "make_train": "training",
    "diagnose": "regime",
}

__all__ = sorted([*_SUBMODULES, *_NAMES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ntk_limits.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"ntk_limits.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'ntk_limits' has no attribute {name!r}")


def __dir__():
    return __all__
