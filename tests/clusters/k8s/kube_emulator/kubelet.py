"""The kubelet: runs each container of a bound pod as a local process group.

Images are not pulled: an ordered image map (glob -> local interpreter) decides what runs. A pod
gets a private directory (``rootfs``); a path P inside the "container" is ``rootfs + P`` on the
host for volume mounts and workingDir, and the kubelet rewrites mountPath / workingDir prefixes
in command, args and env values to those host paths (also exported as
``KUBE_EMULATOR_ROOTFS``)."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .resources import normalize_image
from .store import Obj, Store, now_rfc3339, parse_rfc3339
from .validation import parse_quantity

if TYPE_CHECKING:
    from .server import Config

log = logging.getLogger(__name__)

SIMULATE = "emulator.clustrix.test/simulate"
SIM_MESSAGE = "emulator.clustrix.test/message"
PYTHON_NAME = re.compile(r"python([23](\.\d+)?)?")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NotReady(Exception):
    """The pod cannot start yet: (waiting reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Prepared:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    memory_limit: int | None
    image: str
    start_error: str | None = None  # the runtime could not start it (exit 128, StartError)


@dataclass
class Running:
    prepared: Prepared
    proc: subprocess.Popen[bytes]
    started: str
    restart: int
    cgroup: str | None
    container_id: str
    oom_flag: list[bool] = field(default_factory=lambda: [False])


def set_condition(
    status: Obj, ctype: str, value: bool, reason: str | None = None, message: str | None = None
) -> None:
    conds = status.setdefault("conditions", [])
    sval = "True" if value else "False"
    for c in conds:
        if c["type"] == ctype:
            if c["status"] != sval:
                c["lastTransitionTime"] = now_rfc3339()
            c["status"] = sval
            for k, val in (("reason", reason), ("message", message)):
                if val is None:
                    c.pop(k, None)
                else:
                    c[k] = val
            return
    c = {"type": ctype, "status": sval, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
    if reason is not None:
        c["reason"] = reason
    if message is not None:
        c["message"] = message
    conds.append(c)


def simulated(obj: Obj) -> set[str]:
    ann = obj["metadata"].get("annotations") or {}
    return {s.strip() for s in ann.get(SIMULATE, "").split(",") if s.strip()}


class Memory:
    """Memory limits: a cgroup v1 or v2 memory controller when writable, else ``ulimit -v`` plus
    an RSS watchdog. ``mode`` says which."""

    def __init__(self, base: str, requested: str = "auto") -> None:
        self.mode = "none" if requested == "none" else "rss"
        self.root = ""
        if requested in ("auto", "cgroup"):
            for mode, parent in (
                ("cgroup1", "/sys/fs/cgroup/memory"),
                ("cgroup2", "/sys/fs/cgroup"),
            ):
                if (
                    mode == "cgroup2"
                    and "memory" not in _read("/sys/fs/cgroup/cgroup.controllers").split()
                ):
                    continue
                if mode == "cgroup1" and not os.path.exists(
                    os.path.join(parent, "memory.limit_in_bytes")
                ):
                    continue
                root = os.path.join(parent, base)
                try:
                    os.makedirs(root, exist_ok=True)
                    if mode == "cgroup2":
                        with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                            f.write("+memory")
                    probe = os.path.join(root, "probe")
                    os.makedirs(probe, exist_ok=True)
                    os.rmdir(probe)
                except OSError as exc:
                    log.info("no %s memory cgroup at %s: %s", mode, root, exc)
                    continue
                self.mode, self.root = mode, root
                _remove_stale(parent)
                break
        log.info("memory limits enforced by: %s", self.mode)

    def create(self, name: str, limit: int) -> str | None:
        if self.mode not in ("cgroup1", "cgroup2"):
            return None
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        if self.mode == "cgroup1":
            _write(os.path.join(path, "memory.limit_in_bytes"), str(limit))
            try:
                _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(limit))
            except OSError:
                pass
        else:
            _write(os.path.join(path, "memory.max"), str(limit))
            try:
                _write(os.path.join(path, "memory.swap.max"), "0")
            except OSError:
                pass
        return path

    def oom_killed(self, path: str | None) -> bool:
        if not path:
            return False
        text = _read(
            os.path.join(path, "memory.oom_control" if self.mode == "cgroup1" else "memory.events")
        )
        m = re.search(r"^oom_kill (\d+)", text, re.M)
        return bool(m and int(m.group(1)) > 0)

    def kill_all(self, path: str | None) -> None:
        if not path:
            return
        for line in _read(os.path.join(path, "cgroup.procs")).split():
            try:
                os.kill(int(line), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def remove(self, path: str | None) -> None:
        if not path:
            return
        for _ in range(50):
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill_all(path)
                time.sleep(0.05)

    def remove_root(self) -> None:
        if self.root:
            for name in os.listdir(self.root):
                full = os.path.join(self.root, name)
                if os.path.isdir(full):
                    self.remove(full)
            try:
                os.rmdir(self.root)
            except OSError:
                pass


def _remove_stale(parent: str) -> None:
    """Drop the empty cgroups of emulators that died without cleaning up (SIGKILL)."""
    for name in os.listdir(parent):
        m = re.fullmatch(r"kube-emulator-(\d+)", name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        full = os.path.join(parent, name)
        for sub in os.listdir(full):
            if os.path.isdir(os.path.join(full, sub)):
                try:
                    os.rmdir(os.path.join(full, sub))
                except OSError:
                    pass
        try:
            os.rmdir(full)
        except OSError:
            pass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


class Kubelet:
    def __init__(self, store: Store, config: Config, state_dir: str, node_name: str) -> None:
        self.store = store
        self.config = config
        self.node = node_name
        self.pods_dir = os.path.join(state_dir, "pods")
        self.pvc_dir = os.path.join(state_dir, "volumes")
        os.makedirs(self.pods_dir, exist_ok=True)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(max(1, int(config.max_running)))
        self.memory = Memory(f"kube-emulator-{os.getpid()}", config.memory_enforcement)
        self.stopping = False

    def on_event(self, res: str, etype: str, obj: Obj) -> None:
        if res != "pods":
            return
        w = self.workers.get(obj["metadata"].get("uid", ""))
        if w is not None:
            w.wake.set()

    def sync(self) -> None:
        """Start a worker for each bound pod that has none (called by the controller loop)."""
        if self.stopping:
            return
        with self.store.lock:
            todo = [
                (p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"])
                for p in self.store.values("pods")
                if (p.get("spec") or {}).get("nodeName") == self.node
                and (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
                and p["metadata"]["uid"] not in self.workers
                and not p["metadata"].get("_kubeletDone")
            ]
        for ns, name, uid in todo:
            with self.lock:
                if uid in self.workers:
                    continue
                w = PodWorker(self, ns, name, uid)
                self.workers[uid] = w
            threading.Thread(target=w.run, name=f"pod-{ns}/{name}", daemon=True).start()

    def log_file(self, pod: Obj, container: str, previous: bool) -> tuple[str | None, bool]:
        """(path of the container's current or previous log, whether it still grows)."""
        uid = pod["metadata"]["uid"]
        d = os.path.join(self.pods_dir, uid, "logs", container)
        try:
            runs = sorted(int(n[:-4]) for n in os.listdir(d) if n.endswith(".log"))
        except OSError:
            return None, False
        if not runs:
            return None, False
        if previous:
            if len(runs) < 2:
                return None, False
            return os.path.join(d, f"{runs[-2]}.log"), False
        w = self.workers.get(uid)
        live = bool(w and w.is_running(container))
        return os.path.join(d, f"{runs[-1]}.log"), live

    def kill_now(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.force_kill = True
            w.wake.set()

    def shutdown(self) -> None:
        self.stopping = True
        for w in list(self.workers.values()):
            w.force_kill = True
            w.wake.set()
        deadline = time.monotonic() + 5
        while self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        self.memory.remove_root()

    # -- image map --------------------------------------------------------------------------
    def interpreter_for(self, image: str) -> str | None:
        """The local interpreter of an image ("" = run the command as is); None = no such image."""
        full = normalize_image(image)
        for pattern, interp in self.config.images:
            if fnmatch.fnmatchcase(image, pattern) or fnmatch.fnmatchcase(full, pattern):
                return interp
        return None


class PodWorker:
    def __init__(self, kubelet: Kubelet, ns: str, name: str, uid: str) -> None:
        self.k = kubelet
        self.store = kubelet.store
        self.ns, self.name, self.uid = ns, name, uid
        self.wake = threading.Event()
        self.force_kill = False
        self.root = os.path.join(kubelet.pods_dir, uid)
        self.rootfs = os.path.join(self.root, "rootfs")
        self.running: dict[str, Running] = {}
        self.pull_failures = 0

    # -- helpers --------------------------------------------------------------------------------
    def pod(self) -> Obj | None:
        return self.store.get("pods", self.ns, self.name)

    def is_running(self, container: str) -> bool:
        r = self.running.get(container)
        return bool(r and r.proc.poll() is None)

    def update(self, fn: Any) -> Obj | None:
        def apply(p: Obj) -> Any:
            if p["metadata"]["uid"] != self.uid:
                return False
            fn(p)
            return None

        return self.store.mutate("pods", self.ns, self.name, apply)

    def deleting(self) -> bool:
        if self.force_kill or self.k.stopping:
            return True
        with self.store.lock:
            p = self.store.peek("pods", self.ns, self.name)
            return (
                p is None
                or p["metadata"]["uid"] != self.uid
                or bool(p["metadata"].get("deletionTimestamp"))
            )

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, waking early only for a deletion (not for our own updates)."""
        end = time.monotonic() + seconds
        while not self.deleting():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(left)
            self.wake.clear()

    def sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    # -- lifecycle ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod worker %s/%s crashed", self.ns, self.name)
            for r in self.running.values():
                self._kill_group(r, signal.SIGKILL)
        finally:
            for r in self.running.values():
                self.k.memory.remove(r.cgroup)
            with self.k.lock:
                self.k.workers.pop(self.uid, None)

    def _run(self) -> None:
        pod = self.pod()
        if pod is None:
            return
        spec = pod["spec"]
        containers = spec.get("containers") or []

        def init_status(p: Obj) -> None:
            st = p.setdefault("status", {})
            st["phase"] = "Pending"
            st["hostIP"] = "127.0.0.1"
            st["hostIPs"] = [{"ip": "127.0.0.1"}]
            st.setdefault("startTime", now_rfc3339())
            set_condition(st, "PodReadyToStartContainers", False)
            set_condition(
                st,
                "Initialized",
                not spec.get("initContainers"),
                None if not spec.get("initContainers") else "ContainersNotInitialized",
                None
                if not spec.get("initContainers")
                else "containers with incomplete status: ["
                + " ".join(c["name"] for c in spec["initContainers"])
                + "]",
            )
            names = " ".join(c["name"] for c in containers)
            set_condition(
                st,
                "Ready",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            )
            set_condition(
                st,
                "ContainersReady",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            )
            set_condition(st, "PodScheduled", True)
            st["containerStatuses"] = [self._waiting(c, "ContainerCreating") for c in containers]
            if spec.get("initContainers"):
                st["initContainerStatuses"] = [
                    self._waiting(c, "PodInitializing") for c in spec["initContainers"]
                ]

        self.update(init_status)
        started_at = time.time()

        # wait until the images, volumes and env can be had
        while True:
            if self.deleting():
                self._finish_deletion()
                return
            if self._pod_deadline_passed(pod, started_at):
                self._fail_pod(
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                return
            try:
                prepared = self._prepare(pod)
                break
            except NotReady as nr:
                self._set_waiting(pod, nr)
                self.pause(1.0)
                pod = self.pod() or pod

        # a run slot (the machine is small): stays ContainerCreating until one is free
        while not self.k.slots.acquire(timeout=0.2):
            if self.deleting():
                self._finish_deletion()
                return
        try:
            self._run_containers(pod, prepared, started_at)
        finally:
            self.k.slots.release()

    def _waiting(self, c: Obj, reason: str, message: str | None = None, restart: int = 0) -> Obj:
        w: Obj = {"reason": reason}
        if message:
            w["message"] = message
        return {
            "name": c["name"],
            "state": {"waiting": w},
            "lastState": {},
            "ready": False,
            "restartCount": restart,
            "image": c.get("image", ""),
            "imageID": "",
            "started": False,
        }

    def _set_waiting(self, pod: Obj, nr: NotReady) -> None:
        def fn(p: Obj) -> None:
            st = p["status"]
            key = "containerStatuses"
            st[key] = [
                self._waiting(c, nr.reason, nr.message) for c in p["spec"].get("containers") or []
            ]

        self.update(fn)

    def _pod_deadline_passed(self, pod: Obj, started_at: float) -> bool:
        ads = pod["spec"].get("activeDeadlineSeconds")
        return ads is not None and time.time() - started_at >= int(ads)

    # -- preparation: image, volumes, env --------------------------------------------------------
    def _prepare(self, pod: Obj) -> dict[str, list[Prepared]]:
        sims = simulated(pod)
        ann = pod["metadata"].get("annotations") or {}
        spec = pod["spec"]
        all_c = [("initContainers", c) for c in spec.get("initContainers") or []] + [
            ("containers", c) for c in spec.get("containers") or []
        ]
        for _, c in all_c:
            image = c.get("image", "")
            if sims & {"ErrImagePull", "ImagePullBackOff"} or self.k.interpreter_for(image) is None:
                self.pull_failures += 1
                full = normalize_image(image)
                if self.pull_failures % 4 == 1:  # ErrImagePull, then back-off, and again
                    msg = ann.get(SIM_MESSAGE) or (
                        f'failed to pull and unpack image "{full}": failed to resolve reference '
                        f'"{full}": {full}: not found'
                    )
                    raise NotReady("ErrImagePull", msg)
                raise NotReady("ImagePullBackOff", f'Back-off pulling image "{image}"')
        if "CreateContainerConfigError" in sims:
            raise NotReady(
                "CreateContainerConfigError",
                ann.get(SIM_MESSAGE) or "simulated CreateContainerConfigError",
            )
        os.makedirs(self.rootfs, exist_ok=True)
        os.makedirs(os.path.join(self.rootfs, "root"), exist_ok=True)
        volumes = self._volumes(pod)
        out: dict[str, list[Prepared]] = {"initContainers": [], "containers": []}
        for key, c in all_c:
            out[key].append(self._prepare_container(pod, c, volumes))
        return out

    def _volumes(self, pod: Obj) -> dict[str, str]:
        """Materialise the pod's volumes; returns volume name -> host directory."""
        paths: dict[str, str] = {}
        ns = self.ns
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            d = os.path.join(self.root, "volumes", name)
            if "secret" in vol or "configMap" in vol:
                kind = "secret" if "secret" in vol else "configMap"
                src = vol[kind] or {}
                oname = src.get("secretName") if kind == "secret" else src.get("name")
                obj = self.store.get(
                    "secrets" if kind == "secret" else "configmaps", ns, oname or ""
                )
                if obj is None and not src.get("optional"):
                    what = "secret" if kind == "secret" else "configmap"
                    raise NotReady(
                        "ContainerCreating",
                        f'MountVolume.SetUp failed for volume "{name}" : {what} "{oname}" not found',
                    )
                data: dict[str, bytes] = {}
                if obj is not None:
                    if kind == "secret":
                        data = {
                            k: base64.b64decode(val) for k, val in (obj.get("data") or {}).items()
                        }
                    else:
                        data = {k: val.encode() for k, val in (obj.get("data") or {}).items()}
                        data.update(
                            {
                                k: base64.b64decode(val)
                                for k, val in (obj.get("binaryData") or {}).items()
                            }
                        )
                mode = int(src.get("defaultMode", 0o644))
                files: list[tuple[str, bytes, int]] = []
                if src.get("items"):
                    for it in src["items"]:
                        if it["key"] not in data:
                            if src.get("optional"):
                                continue
                            raise NotReady(
                                "ContainerCreating",
                                f'MountVolume.SetUp failed for volume "{name}" : configmap references non-existent config key: {it["key"]}',
                            )
                        files.append(
                            (
                                it.get("path") or it["key"],
                                data[it["key"]],
                                int(it.get("mode", mode)),
                            )
                        )
                else:
                    files = [(k, val, mode) for k, val in data.items()]
                _atomic_writer(d, files)
            elif "emptyDir" in vol:
                os.makedirs(d, exist_ok=True)
            elif "hostPath" in vol:
                d = vol["hostPath"]["path"]
                if (vol["hostPath"].get("type") or "") in ("DirectoryOrCreate",):
                    os.makedirs(d, exist_ok=True)
            elif "persistentVolumeClaim" in vol:
                d = os.path.join(self.k.pvc_dir, ns, vol["persistentVolumeClaim"]["claimName"])
                os.makedirs(d, exist_ok=True)
            else:
                os.makedirs(d, exist_ok=True)  # unsupported kinds: an empty directory
            paths[name] = d
        return paths

    def _prepare_container(self, pod: Obj, c: Obj, volumes: dict[str, str]) -> Prepared:
        mounts: list[tuple[str, str]] = []
        for m in c.get("volumeMounts") or []:
            src = volumes[m["name"]]
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                os.makedirs(src, exist_ok=True) if not os.path.exists(src) else None
            host = self.rootfs + m["mountPath"]
            os.makedirs(os.path.dirname(host.rstrip("/")) or "/", exist_ok=True)
            if os.path.islink(host):
                os.unlink(host)
            if not os.path.exists(host):
                os.symlink(src, host.rstrip("/"))
            mounts.append((m["mountPath"].rstrip("/") or "/", host.rstrip("/")))
        wd = c.get("workingDir")
        if wd:
            host = self.rootfs + wd
            if not any(wd == mp or wd.startswith(mp + "/") for mp, _ in mounts):
                os.makedirs(host, exist_ok=True)
            mounts.append((wd.rstrip("/") or "/", host.rstrip("/")))
        mounts.sort(key=lambda m: -len(m[0]))

        def rewrite(s: str) -> str:
            for mp, host in mounts:
                if mp == "/":
                    continue
                s = re.sub(r"(?<![\w./-])" + re.escape(mp) + r"(?![\w.-])", lambda _m, h=host: h, s)
            return s

        image = c.get("image", "")
        interp = self.k.interpreter_for(image) or ""
        bindir = os.path.join(self.root, "bin")
        if interp:
            os.makedirs(bindir, exist_ok=True)
            names = {"python", "python3"}
            mm = re.search(r"python(\d\.\d+)", interp) or re.search(r"(\d\.\d+)", image)
            if mm:
                names.add("python" + mm.group(1))
            for n in names:
                link = os.path.join(bindir, n)
                if not os.path.lexists(link):
                    os.symlink(interp, link)
            for n in ("pip", "pip3"):
                wrapper = os.path.join(bindir, n)
                if not os.path.exists(wrapper):
                    with open(wrapper, "w") as f:
                        f.write(f'#!/bin/sh\nexec "{interp}" -m pip "$@"\n')
                    os.chmod(wrapper, 0o755)
        env: dict[str, str] = {
            "PATH": (bindir + ":" if interp else "") + BASE_PATH,
            "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
            "HOME": os.path.join(self.rootfs, "root"),
            "KUBE_EMULATOR_ROOTFS": self.rootfs,
        }
        if interp:
            env["LANG"] = "C.UTF-8"
        ns = self.ns

        def missing(kind: str, name: str) -> NotReady:
            return NotReady("CreateContainerConfigError", f'{kind} "{name}" not found')

        for ef in c.get("envFrom") or []:
            prefix = ef.get("prefix", "")
            for kind, res, ref_key in (
                ("secret", "secrets", "secretRef"),
                ("configmap", "configmaps", "configMapRef"),
            ):
                ref = ef.get(ref_key)
                if ref is None:
                    continue
                obj = self.store.get(res, ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise missing(kind, ref.get("name", ""))
                for k, val in (obj.get("data") or {}).items():
                    text = (
                        base64.b64decode(val).decode("utf-8", "replace")
                        if kind == "secret"
                        else val
                    )
                    if re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", prefix + k):
                        env[prefix + k] = text
        for e in c.get("env") or []:
            name = e["name"]
            if "valueFrom" not in e:
                env[name] = _expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            val: str | None = None
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                is_secret = "secretKeyRef" in vf
                ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
                obj = self.store.get(
                    "secrets" if is_secret else "configmaps", ns, ref.get("name", "")
                )
                kind = "secret" if is_secret else "configmap"
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise missing(kind, ref.get("name", ""))
                data = obj.get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise NotReady(
                        "CreateContainerConfigError",
                        f"couldn't find key {ref['key']} in {'Secret' if is_secret else 'ConfigMap'} {ns}/{ref['name']}",
                    )
                raw = data[ref["key"]]
                val = base64.b64decode(raw).decode("utf-8", "replace") if is_secret else raw
            elif "fieldRef" in vf:
                val = _field_ref(pod, vf["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in vf:
                val = _resource_ref(c, vf["resourceFieldRef"])
            if val is not None:
                env[name] = val
        env = {k: rewrite(val) for k, val in env.items()}
        command = [_expand(x, env) for x in c.get("command") or []]
        args = [_expand(x, env) for x in c.get("args") or []]
        argv = command + args if command else (args or (["python3"] if interp else []))
        if not argv:
            raise NotReady("CreateContainerError", "no command specified")
        argv = [rewrite(a) for a in argv]
        start_error = None
        if interp and PYTHON_NAME.fullmatch(os.path.basename(argv[0])):
            argv[0] = interp
        elif "/" not in argv[0] and shutil.which(argv[0], path=env["PATH"]) is None:
            start_error = (
                "failed to create containerd task: failed to create shim task: OCI runtime create "
                "failed: runc create failed: unable to start container process: exec: "
                f'"{argv[0]}": executable file not found in $PATH: unknown'
            )
        cwd = self.rootfs + wd if wd else self.rootfs
        lim = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        return Prepared(
            name=c["name"],
            argv=argv,
            env=env,
            cwd=cwd,
            memory_limit=int(parse_quantity(lim)) if lim is not None else None,
            image=image,
            start_error=start_error,
        )

    # -- running ---------------------------------------------------------------------------------
    def _start(self, p: Prepared, restart: int) -> Running:
        logdir = os.path.join(self.root, "logs", p.name)
        os.makedirs(logdir, exist_ok=True)
        cid = hashlib.sha256(f"{self.uid}/{p.name}/{restart}".encode()).hexdigest()
        cg = None
        wrapper: list[str] = []
        if p.memory_limit is not None and self.k.memory.mode in ("cgroup1", "cgroup2"):
            cg = self.k.memory.create(f"{self.uid}-{p.name}-{restart}", p.memory_limit)
            wrapper = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg or ""]
        elif p.memory_limit is not None and self.k.memory.mode == "rss":
            kib = max(p.memory_limit * 4, p.memory_limit + 512 * 2**20) // 1024
            wrapper = ["/bin/sh", "-c", f'ulimit -v {kib} && exec "$@"', "sh"]
        with open(os.path.join(logdir, f"{restart}.log"), "ab") as logf:
            proc = subprocess.Popen(
                wrapper + p.argv if p.start_error is None else ["/bin/sh", "-c", "exit 128"],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=p.env,
                cwd=p.cwd,
                start_new_session=True,
                close_fds=True,
            )
        r = Running(p, proc, now_rfc3339(), restart, cg, "containerd://" + cid)
        threading.Thread(target=self._waiter, args=(r,), daemon=True).start()
        if p.memory_limit is not None and self.k.memory.mode == "rss":
            threading.Thread(target=self._rss_watch, args=(r,), daemon=True).start()
        return r

    def _waiter(self, r: Running) -> None:
        r.proc.wait()
        self.wake.set()

    def _rss_watch(self, r: Running) -> None:
        limit = r.prepared.memory_limit or 0
        while r.proc.poll() is None:
            if _tree_rss(r.proc.pid) > limit:
                r.oom_flag[0] = True
                self._kill_group(r, signal.SIGKILL)
                return
            time.sleep(0.05)

    def _kill_group(self, r: Running, sig: int) -> None:
        try:
            os.killpg(r.proc.pid, sig)
        except OSError:
            pass
        if sig == signal.SIGKILL:
            self.k.memory.kill_all(r.cgroup)

    def _terminated(self, r: Running, killed_reason: str | None = None) -> Obj:
        rc = r.proc.returncode if r.proc.returncode is not None else -9
        code = _exit_code(rc)
        oom = r.oom_flag[0] or self.k.memory.oom_killed(r.cgroup)
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        if r.prepared.start_error is not None:
            reason = "StartError"
        if killed_reason:
            reason = killed_reason if not oom else reason
        try:
            os.killpg(r.proc.pid, signal.SIGKILL)  # what is left of the container goes with it
        except OSError:
            pass
        self.k.memory.kill_all(r.cgroup)
        out = {
            "exitCode": code,
            "reason": reason,
            "startedAt": r.started,
            "finishedAt": now_rfc3339(),
            "containerID": r.container_id,
        }
        if r.prepared.start_error is not None:
            out["message"] = r.prepared.start_error
        return out

    def _cstatus(self, r: Running, state: Obj, *, ready: bool, last: Obj | None = None) -> Obj:
        image = r.prepared.image
        return {
            "name": r.prepared.name,
            "state": state,
            "lastState": last or {},
            "ready": ready,
            "restartCount": r.restart,
            "image": normalize_image(image),
            "imageID": normalize_image(image).rsplit(":", 1)[0]
            + "@sha256:"
            + hashlib.sha256(image.encode()).hexdigest(),
            "containerID": r.container_id,
            "started": "running" in state,
        }

    def _run_containers(
        self, pod: Obj, prepared: dict[str, list[Prepared]], started_at: float
    ) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        grace_default = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        backoff = float(self.k.config.restart_backoff_seconds)
        # init containers, one after the other
        init = prepared["initContainers"]
        for i, p in enumerate(init):
            restart = 0
            while True:
                r = self._start(p, restart)
                self.running[p.name] = r
                self._publish_init(
                    i, init, self._cstatus(r, {"running": {"startedAt": r.started}}, ready=False)
                )
                outcome = self._wait_one(r, pod, started_at, grace_default)
                if outcome == "deleted":
                    return
                term = self._terminated(r)
                self._publish_init(
                    i, init, self._cstatus(r, {"terminated": term}, ready=term["exitCode"] == 0)
                )
                if term["exitCode"] == 0:
                    break
                if policy == "Never":
                    self._finish_pod("Failed")
                    return
                restart += 1
                self.pause(backoff)
        if init:
            self.update(lambda p: set_condition(p["status"], "Initialized", True))
        # main containers, together
        restarts = dict.fromkeys((p.name for p in prepared["containers"]), 0)
        last: dict[str, Obj] = {}
        finals: dict[str, Obj] = {}
        for p in prepared["containers"]:
            self.running[p.name] = self._start(p, 0)
        self._publish_running(pod, finals, last)
        while True:
            if self.deleting():
                self._finish_deletion(grace_default)
                return
            if self._pod_deadline_passed(pod, started_at):
                for r in self.running.values():
                    if r.proc.poll() is None:
                        self._kill_group(r, signal.SIGKILL)
                        r.proc.wait()
                self._fail_pod(
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                return
            changed = False
            for name, r in list(self.running.items()):
                if name in finals or r.proc.poll() is None:
                    continue
                changed = True
                term = self._terminated(r)
                self.k.memory.remove(r.cgroup)
                again = policy == "Always" or (policy == "OnFailure" and term["exitCode"] != 0)
                if not again:
                    finals[name] = term
                    continue
                last[name] = {"terminated": term}
                restarts[name] += 1
                self._publish_crash(r, term)
                self.pause(min(backoff * (2 ** (restarts[name] - 1)), 300.0))
                if self.deleting():
                    self._finish_deletion(grace_default)
                    return
                self.running[name] = self._start(r.prepared, restarts[name])
            if len(finals) == len(self.running):
                ok = all(t["exitCode"] == 0 for t in finals.values())
                self._publish_running(pod, finals, last, phase="Succeeded" if ok else "Failed")
                return
            if changed:
                self._publish_running(pod, finals, last)
            self.sleep(self._time_left(pod, started_at))

    def _time_left(self, pod: Obj, started_at: float) -> float:
        ads = pod["spec"].get("activeDeadlineSeconds")
        if ads is None:
            return 5.0
        return max(0.01, min(5.0, started_at + int(ads) - time.time()))

    def _wait_one(self, r: Running, pod: Obj, started_at: float, grace: int) -> str:
        while r.proc.poll() is None:
            if self.deleting():
                self._finish_deletion(grace)
                return "deleted"
            self.sleep(self._time_left(pod, started_at))
        return "exited"

    def _publish_init(self, i: int, init: list[Prepared], status: Obj) -> None:
        def fn(p: Obj) -> None:
            sts = p["status"].setdefault("initContainerStatuses", [])
            while len(sts) < len(init):
                sts.append({})
            sts[i] = status

        self.update(fn)

    def _publish_crash(self, r: Running, term: Obj) -> None:
        def fn(p: Obj) -> None:
            for cs in p["status"].get("containerStatuses") or []:
                if cs["name"] == r.prepared.name:
                    cs["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {r.prepared.name} in pod {self.name}_{self.ns}({self.uid})",
                        }
                    }
                    cs["lastState"] = {"terminated": term}
                    cs["ready"] = False
                    cs["started"] = False
            names = [
                cs["name"] for cs in p["status"].get("containerStatuses") or [] if not cs["ready"]
            ]
            set_condition(
                p["status"],
                "Ready",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(names)}]",
            )
            set_condition(
                p["status"],
                "ContainersReady",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(names)}]",
            )

        self.update(fn)

    def _publish_running(
        self, pod: Obj, finals: dict[str, Obj], last: dict[str, Obj], phase: str = "Running"
    ) -> None:
        def fn(p: Obj) -> None:
            st = p["status"]
            cs = []
            for name, r in self.running.items():
                if name in finals:
                    cs.append(
                        self._cstatus(
                            r, {"terminated": finals[name]}, ready=False, last=last.get(name)
                        )
                    )
                else:
                    cs.append(
                        self._cstatus(
                            r,
                            {"running": {"startedAt": r.started}},
                            ready=True,
                            last=last.get(name),
                        )
                    )
            st["containerStatuses"] = cs
            st["phase"] = phase
            st["podIP"] = "127.0.0.1"
            st["podIPs"] = [{"ip": "127.0.0.1"}]
            set_condition(st, "PodReadyToStartContainers", True)
            set_condition(st, "Initialized", True)
            if phase == "Running":
                unready = [c["name"] for c in cs if not c["ready"]]
                if unready:
                    msg = f"containers with unready status: [{' '.join(unready)}]"
                    set_condition(st, "Ready", False, "ContainersNotReady", msg)
                    set_condition(st, "ContainersReady", False, "ContainersNotReady", msg)
                else:
                    set_condition(st, "Ready", True)
                    set_condition(st, "ContainersReady", True)
            else:
                reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
                set_condition(st, "Ready", False, reason)
                set_condition(st, "ContainersReady", False, reason)
                set_condition(st, "PodReadyToStartContainers", False)

        self.update(fn)
        if phase != "Running":
            self._after_terminal()

    def _after_terminal(self) -> None:
        """A terminal pod that is being deleted goes now (the API left it to the kubelet)."""
        with self.store.lock:
            p = self.store.peek("pods", self.ns, self.name)
            if (
                p is not None
                and p["metadata"]["uid"] == self.uid
                and p["metadata"].get("deletionTimestamp")
            ):
                self.store.remove("pods", self.ns, self.name)

    def _fail_pod(self, reason: str, message: str) -> None:
        def fn(p: Obj) -> None:
            st = p["status"]
            st["phase"] = "Failed"
            st["reason"] = reason
            st["message"] = message
            for cs in st.get("containerStatuses") or []:
                r = self.running.get(cs["name"])
                if r is not None and "terminated" not in cs["state"]:
                    cs["state"] = {"terminated": self._terminated(r, "Error")}
                    cs["ready"] = False
                    cs["started"] = False
            set_condition(st, "Ready", False, "PodFailed")
            set_condition(st, "ContainersReady", False, "PodFailed")

        self.update(fn)
        self._after_terminal()

    def _finish_pod(self, phase: str) -> None:
        def fn(p: Obj) -> None:
            p["status"]["phase"] = phase
            set_condition(
                p["status"], "Ready", False, "PodFailed" if phase == "Failed" else "PodCompleted"
            )

        self.update(fn)
        self._after_terminal()

    def _finish_deletion(self, grace_default: int = 30) -> None:
        """SIGTERM the process groups, SIGKILL after the grace period, then remove the pod."""
        p = self.pod()
        grace = grace_default
        if p is not None and p["metadata"].get("deletionGracePeriodSeconds") is not None:
            grace = int(p["metadata"]["deletionGracePeriodSeconds"])
        if self.force_kill or self.k.stopping:
            grace = 0
        live = [r for r in self.running.values() if r.proc.poll() is None]
        for r in live:
            self._kill_group(r, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        while (
            any(r.proc.poll() is None for r in live)
            and time.monotonic() < deadline
            and not self.force_kill
        ):
            self.sleep(0.1)
        for r in live:
            if r.proc.poll() is None:
                self._kill_group(r, signal.SIGKILL)
            r.proc.wait()
        if live:

            def fn(p: Obj) -> None:
                cs = []
                for name, r in self.running.items():
                    cs.append(self._cstatus(r, {"terminated": self._terminated(r)}, ready=False))
                    del name
                p["status"]["containerStatuses"] = cs
                p["status"]["phase"] = (
                    "Failed"
                    if any(c["state"]["terminated"]["exitCode"] for c in cs)
                    else "Succeeded"
                )

            self.update(fn)
        with self.store.lock:
            cur = self.store.peek("pods", self.ns, self.name)
            if cur is not None and cur["metadata"]["uid"] == self.uid:
                self.store.remove("pods", self.ns, self.name)


def _atomic_writer(d: str, files: list[tuple[str, bytes, int]]) -> None:
    """kubelet's AtomicWriter layout: ``..<timestamp>/`` holds the files, ``..data`` points at
    it, and each top-level name is a symlink through ``..data``."""
    os.makedirs(d, exist_ok=True)
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
    ts = os.path.join(d, stamp)
    os.makedirs(ts, exist_ok=True)
    tops = set()
    for rel, data, mode in files:
        full = os.path.join(ts, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, mode)
        tops.add(rel.split("/", 1)[0])
    tmp = os.path.join(d, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(stamp, tmp)
    old = (
        os.readlink(os.path.join(d, "..data"))
        if os.path.islink(os.path.join(d, "..data"))
        else None
    )
    os.replace(tmp, os.path.join(d, "..data"))
    for top in tops:
        link = os.path.join(d, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    if old and old != stamp:
        shutil.rmtree(os.path.join(d, old), ignore_errors=True)


def _expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes)."""

    def rep(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return re.sub(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)", rep, s)


def _field_ref(pod: Obj, path: str) -> str | None:
    md = pod["metadata"]
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    return None


def _resource_ref(c: Obj, ref: Obj) -> str:
    res = ref.get("resource", "")
    part, _, name = res.partition(".")
    q = ((c.get("resources") or {}).get(part) or {}).get(name)
    if q is None:
        return "0"
    div = parse_quantity(ref.get("divisor", "1"))
    val = parse_quantity(q) / div
    return str(int(-(-val // 1)))


def _tree_rss(pid: int) -> int:
    total = 0
    todo = [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return total


_ = parse_rfc3339
