"""Study 2 (issue 6): uncertainty in neural contextual bandits (claim C3)."""
