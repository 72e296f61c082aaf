"""Empirical and infinite-width NTKs, matrix-free products and regime diagnostics."""

from ntk_limits.kernels.blocked import KernelTooLarge, blocked_kernel_fn, kernel_memory_bytes
from ntk_limits.kernels.diagnostics import (
    FROBENIUS_METHODS,
    GramSpectrum,
    JacobianChange,
    gram_spectrum,
    jacobian_change,
    jacobian_difference_fn,
    jacobian_spectral_norm,
    kernel_alignment,
    kernel_change,
    linearization_error,
)
from ntk_limits.kernels.empirical import (
    ALGORITHMS,
    couple_examples,
    empirical_ntk_fn,
    examples_coupled,
    jacobian,
    ntk_vp_fn,
)
from ntk_limits.kernels.factors import (
    MLPFactors,
    factor_kernel,
    factor_kernel_diagonal,
    mlp_factors,
)

__all__ = [
    "ALGORITHMS",
    "FROBENIUS_METHODS",
    "GramSpectrum",
    "JacobianChange",
    "KernelTooLarge",
    "MLPFactors",
    "blocked_kernel_fn",
    "couple_examples",
    "empirical_ntk_fn",
    "examples_coupled",
    "factor_kernel",
    "factor_kernel_diagonal",
    "gram_spectrum",
    "jacobian",
    "jacobian_change",
    "jacobian_difference_fn",
    "jacobian_spectral_norm",
    "kernel_alignment",
    "kernel_change",
    "kernel_memory_bytes",
    "linearization_error",
    "mlp_factors",
    "ntk_vp_fn",
]
