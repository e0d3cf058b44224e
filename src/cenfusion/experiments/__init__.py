"""Comparisons: CEN against its ablations and the fusion baselines, trained with one budget."""

from cenfusion.experiments.runner import CellResult, Comparison, train_cell
from cenfusion.experiments.variants import Variant, resolve_variants

__all__ = ["CellResult", "Comparison", "Variant", "resolve_variants", "train_cell"]
