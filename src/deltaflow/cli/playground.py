"""``deltaflow playground``: train a small network live in the browser and watch its deltas."""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser
from typing import Any

from deltaflow.errors import ConfigError

INSTALL_HINT = 'the playground needs the web extra; install it with: pip install "deltaflow[web]"'


def register(sub: Any) -> None:
    p = sub.add_parser(
        "playground",
        help="build, train and step a small network in the browser, deltas and all",
        description=(
            "Start a local web page where you build a small network on a two-dimensional "
            "data set or the 8x8 digits, train it live on deltaflow's engine, and open any "
            "step to see the dynamic programme's table of deltas filled from the output "
            "layer back. Needs the web extra: pip install 'deltaflow[web]'."
        ),
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1: this machine only)",
    )
    p.add_argument("--port", type=int, default=8765, help="port to listen on (8765; 0: any free)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=run)


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, so a taken port is one clear error before anything starts."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConfigError(f"--host {host!r} is not an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
        ) from None
    sock.listen(64)
    return sock


def run(args: Any) -> int:
    try:
        import uvicorn

        from deltaflow.web.server import MAX_MESSAGE_BYTES, create_app
    except ImportError:
        print(f"deltaflow: error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    config = uvicorn.Config(
        create_app(),
        log_level="warning",
        ws_max_size=4 * MAX_MESSAGE_BYTES,
        ws_ping_interval=20,
    )
    server = uvicorn.Server(config)
    print(f"deltaflow playground at {url} (Ctrl+C to stop)", flush=True)
    if not args.no_browser:
        threading.Timer(0.8, webbrowser.open, (url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
