"""Scorers: rate each candidate in [0, 1], 1 best; the profile weighs and sums them."""
