"""Study 1 — optimization: are the conditions for fast NGD convergence met in practice?"""
