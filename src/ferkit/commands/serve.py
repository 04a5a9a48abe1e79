"""`ferkit serve`: the web service (JSON API) and its page, over one Predictor."""

from __future__ import annotations

import argparse
import socket
import sys

from ferkit.commands.model_options import add_model_arguments, make_predictor
from ferkit.commands.options import AT_LEAST_1
from ferkit.config import Bound

NAME = "serve"
HELP = "web service and page for predictions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=Bound(0, 65535).arg(int), default=8000, help="0 to 65535 (0: any free port)")
    p.add_argument("--max-bytes", type=AT_LEAST_1, default=10 * 1024 * 1024, help="largest upload in bytes (10 MiB)")
    add_model_arguments(p)
    # Requests are decoded and searched in parallel, one per core (service.py): one thread per
    # library call avoids threads of concurrent calls waiting on each other.
    p.set_defaults(threads=1)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ferkit.infer.service import create_app

    try:
        check_listen(args.host, args.port)  # before the model loads: a port in use is one line, not three tracebacks
        predictor = make_predictor(args)
    except (ValueError, OSError) as e:
        print(f"ferkit serve: error: {e}", file=sys.stderr)
        return 2
    print(f"ferkit serve: page at http://{args.host}:{args.port}/  API docs at /docs", file=sys.stderr)
    uvicorn.run(
        create_app(predictor, max_bytes=args.max_bytes, max_pixels=args.max_pixels), host=args.host, port=args.port
    )
    return 0


def check_listen(host: str, port: int) -> None:
    """Bind `host`:`port` once and let go, so that a bad host, a port in use or a port that needs
    root is one line (an OSError) before the model loads, not uvicorn's tracebacks."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(address)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
