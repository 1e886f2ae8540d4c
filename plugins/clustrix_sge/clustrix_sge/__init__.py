"""clustrix backend for Grid Engine (SGE): ``scheduler = "sge"`` in a profile.

The scheduler class lives in :mod:`clustrix_sge.scheduler`; :mod:`clustrix_sge.plugin` registers it
(cheaply) through the ``clustrix`` entry point."""

__version__ = "0.2.0"
