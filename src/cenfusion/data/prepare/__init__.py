"""Real data sets from their official downloads to the layouts the loaders read (the
``prepare`` extra: h5py and SciPy read the MATLAB files)."""

from cenfusion.data.prepare.nyudv2 import PreparedSplits, prepare_nyudv2

__all__ = ["PreparedSplits", "prepare_nyudv2"]
