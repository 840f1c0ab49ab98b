"""Pytree handling: which leaves are perturbed, their paths and layout."""
