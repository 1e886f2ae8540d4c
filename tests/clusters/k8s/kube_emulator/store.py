"""The object store: one lock, a global resourceVersion counter and an event log for watches."""

from __future__ import annotations

import collections
import copy
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]
Listener = Callable[[str, str, Obj], None]

EVENT_LOG_SIZE = 50000


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def new_uid() -> str:
    return str(uuid.uuid4())


class Store:
    """Objects by resource key (``pods``, ``batch/jobs``) and (namespace, name).

    Every write gets the next resourceVersion and is appended to the event log that watches
    read; listeners (controllers, kubelet) are called after each write, under the lock, and
    must only take note (set an Event), never block."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.objects: dict[str, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self.log: collections.deque[tuple[int, str, str, Obj]] = collections.deque(
            maxlen=EVENT_LOG_SIZE
        )
        self.listeners: list[Listener] = []
        self.uids: dict[str, tuple[str, str, str]] = {}  # uid -> (resource, ns, name)

    # -- reads --------------------------------------------------------------------------------
    def get(self, res: str, ns: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects[res].get((ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def peek(self, res: str, ns: str, name: str) -> Obj | None:
        """The stored object itself (no copy): read-only, under ``self.lock``."""
        return self.objects[res].get((ns, name))

    def list(self, res: str, ns: str | None = None) -> tuple[list[Obj], str]:
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (ons, _), o in sorted(self.objects[res].items())
                if ns is None or ons == ns
            ]
            return items, str(self.rv)

    def values(self, res: str) -> list[Obj]:
        """The stored objects themselves: read-only, under ``self.lock``."""
        return list(self.objects[res].values())

    def exists_uid(self, uid: str) -> bool:
        with self.lock:
            return uid in self.uids

    # -- writes -------------------------------------------------------------------------------
    def _emit(self, res: str, etype: str, obj: Obj) -> None:
        self.log.append((self.rv, res, etype, copy.deepcopy(obj)))
        for fn in self.listeners:
            fn(res, etype, obj)
        self.cond.notify_all()

    def create(self, res: str, obj: Obj) -> Obj:
        with self.lock:
            md = obj["metadata"]
            key = (md.get("namespace", ""), md["name"])
            if key in self.objects[res]:
                raise KeyError(key)
            md.setdefault("uid", new_uid())
            md["creationTimestamp"] = now_rfc3339()
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            self.objects[res][key] = obj
            self.uids[md["uid"]] = (res, key[0], key[1])
            self._emit(res, "ADDED", obj)
            return copy.deepcopy(obj)

    def replace(self, res: str, obj: Obj) -> Obj:
        """Store ``obj`` (same namespace/name) as the new version; removes it when it is being
        deleted and has no finalizers left."""
        with self.lock:
            md = obj["metadata"]
            key = (md.get("namespace", ""), md["name"])
            if (
                res not in ("pods", "namespaces")
                and md.get("deletionTimestamp")
                and not md.get("finalizers")
            ):
                return self.remove(res, key[0], key[1], final=obj) or obj
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            self.objects[res][key] = obj
            self._emit(res, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def remove(self, res: str, ns: str, name: str, final: Obj | None = None) -> Obj | None:
        with self.lock:
            obj = self.objects[res].pop((ns, name), None)
            if obj is None:
                return None
            if final is not None:
                obj = final
            self.uids.pop(obj["metadata"].get("uid", ""), None)
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(res, "DELETED", obj)
            return copy.deepcopy(obj)

    def mutate(self, res: str, ns: str, name: str, fn: Callable[[Obj], Any]) -> Obj | None:
        """Apply ``fn`` to a copy of the object; store it when it changed. Returns the result
        (None when the object is gone or ``fn`` returned False)."""
        with self.lock:
            cur = self.objects[res].get((ns, name))
            if cur is None:
                return None
            new = copy.deepcopy(cur)
            if fn(new) is False:
                return None
            if new == cur:
                return copy.deepcopy(cur)
            return self.replace(res, new)

    # -- watch --------------------------------------------------------------------------------
    def oldest_rv(self) -> int:
        with self.lock:
            return self.log[0][0] - 1 if len(self.log) == self.log.maxlen else 0

    def events_after(self, rv: int, timeout: float) -> tuple[list[tuple[int, str, str, Obj]], int]:
        """Events with resourceVersion > rv (waiting up to ``timeout`` for one)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.rv <= rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return [], rv
                self.cond.wait(left)
            out = []
            for ev in reversed(self.log):
                if ev[0] <= rv:
                    break
                out.append(ev)
            out.reverse()
            return out, self.rv
