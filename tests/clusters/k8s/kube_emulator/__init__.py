"""A Kubernetes API server emulator for clustrix's tests (test infrastructure, not product).

It speaks HTTP(S)/JSON like kube-apiserver to the official ``kubernetes`` client and to
``kubectl``; its job controller creates pods and its kubelet runs each pod's command as a
local process. See ``tests/clusters/k8s/README.md`` for what it emulates and what it does not.
"""

from __future__ import annotations

__all__ = ["Emulator"]

from .server import Emulator
