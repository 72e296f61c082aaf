"""Teaser — finite MLPs' linearised-Laplace predictive against the infinite-width NTK-GP."""
