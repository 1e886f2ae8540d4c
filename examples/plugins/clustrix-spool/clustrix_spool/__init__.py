"""clustrix-spool: an example clustrix scheduler plugin for "spool", a tiny batch system it ships.

Copy this package to write a backend for your own scheduler; see docs/writing-a-plugin.md in the
clustrix repository. Nothing is imported here: clustrix loads :mod:`clustrix_spool.plugin` through
the ``clustrix`` entry point, and that module imports the scheduler class only when asked for it.
"""

__version__ = "0.1.0"
