"""Study 0 — kernels: the empirical NTK against the infinite-width NTK as width grows."""
