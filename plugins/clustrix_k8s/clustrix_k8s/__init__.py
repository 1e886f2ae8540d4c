"""clustrix backend for Kubernetes (``scheduler = "k8s"``).

The scheduler lives in :mod:`clustrix_k8s.scheduler`; it is not imported here, and it imports the
official ``kubernetes`` client only when a profile uses it, so loading the plugin stays cheap."""

__version__ = "0.1.0"
