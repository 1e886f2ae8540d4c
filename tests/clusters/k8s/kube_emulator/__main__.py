"""``python -m kube_emulator --state-dir DIR [--config FILE]``: run the emulator until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .server import Config, Emulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kube_emulator", description=__doc__)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument(
        "--config", help="JSON settings (see server.Config); default STATE_DIR/config.json"
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    ap.add_argument("--no-tls", action="store_true", help="plain HTTP instead of HTTPS")
    ap.add_argument("--pid-file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = Config.load(args.config or os.path.join(args.state_dir, "config.json"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    emu = Emulator(
        state_dir=args.state_dir, config=config, host=args.host, port=args.port, tls=not args.no_tls
    )
    emu.start()
    if args.pid_file:
        with open(args.pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(args.pid_file + ".tmp", args.pid_file)
    logging.getLogger("kube_emulator").info(
        "serving %s (kubeconfig %s, memory limits: %s)",
        emu.url,
        emu.kubeconfig,
        emu.kubelet.memory.mode,
    )
    stop.wait()
    logging.getLogger("kube_emulator").info("stopping")
    emu.stop()
    if args.pid_file:
        try:
            os.unlink(args.pid_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
