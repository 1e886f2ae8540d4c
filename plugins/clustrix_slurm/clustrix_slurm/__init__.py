"""clustrix backend for SLURM (``scheduler = "slurm"``).

The scheduler class lives in :mod:`clustrix_slurm.scheduler` and the pure output parsers in
:mod:`clustrix_slurm.parsers`; neither is imported here, so loading the plugin stays cheap."""

__version__ = "0.2.0"
