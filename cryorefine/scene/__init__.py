"""Synthetic micrographs with per-particle ground truth: species, placement, ice, imaging."""
