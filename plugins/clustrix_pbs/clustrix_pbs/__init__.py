"""clustrix backend for PBS: ``scheduler = "pbs"`` (PBS Professional / OpenPBS) and
``scheduler = "torque"`` (Torque, and SLURM's Torque-compatible commands).

The scheduler classes live in :mod:`clustrix_pbs.scheduler` and the pure output parsers in
:mod:`clustrix_pbs.parsers`; neither is imported here, so loading the plugin stays cheap."""

__version__ = "0.2.0"
