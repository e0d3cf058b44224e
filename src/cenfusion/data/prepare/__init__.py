"""Real data sets from their official downloads to the layouts the loaders read (the
``prepare`` extra: h5py and SciPy read the MATLAB files)."""

from cenfusion.data.prepare.common import PreparedSplits
from cenfusion.data.prepare.nyudv2 import prepare_nyudv2
from cenfusion.data.prepare.sunrgbd import prepare_sunrgbd

__all__ = ["PreparedSplits", "prepare_nyudv2", "prepare_sunrgbd"]
