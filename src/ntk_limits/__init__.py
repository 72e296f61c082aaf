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
"""

from ntk_limits import kernels, linearize, models, training
from ntk_limits.kernels import (
    empirical_ntk_fn,
    gram_spectrum,
    jacobian_change,
    kernel_alignment,
    kernel_change,
    linearization_error,
    ntk_vp_fn,
)
from ntk_limits.linearize import gp_regression, gradient_descent_mse, ntk_gp_ensemble
from ntk_limits.models import Architecture, cnn, mlp, num_params, wide_resnet
from ntk_limits.training import make_train

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "cnn",
    "empirical_ntk_fn",
    "gp_regression",
    "gradient_descent_mse",
    "gram_spectrum",
    "jacobian_change",
    "kernel_alignment",
    "kernel_change",
    "kernels",
    "linearization_error",
    "linearize",
    "make_train",
    "mlp",
    "models",
    "ntk_gp_ensemble",
    "ntk_vp_fn",
    "num_params",
    "training",
    "wide_resnet",
]
