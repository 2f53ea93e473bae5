"""`hymotion serve`: a long-lived backend that keeps the model warm and streams motion to the Blender add-on.

Requests arrive as protocol lines (hymotion.shared.protocol) on stdin (stdio.py), or on loopback TCP connections that
authenticate with a token (tcp.py); core.py holds the job queue and the answers to every request. A single worker
thread runs jobs in order while the reading side keeps answering ``status``, ``ping`` and ``cancel``. ``hello`` goes
out before torch is imported. The process exits when stdin closes, when its parent process dies, on ``shutdown`` and on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from .. import __version__
from ..paths import CACHE_DIR_HELP, user_cache_dir
from ..shared.errors import HyMotionError
from ..shared.models import DEFAULT_MODEL, model_help
from ..shared.protocol import PROTOCOL_VERSION
from .core import ServeOptions, Service, log
from .stdio import route_standard_streams_away, serve_stdio
from .tcp import TOKEN_ENV, announce, is_loopback, listen, parse_listen_address, serve_tcp, server_token, write_token

KEPT_LOG_FILES = 20


def _set_up_logging(log_file: str | None) -> str | None:
    """Log to stderr and to a file (the newest few are kept); returns the file's path, None if it cannot be written."""
    logger = logging.getLogger("hymotion")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.propagate = False
    warnings_logger.addHandler(console)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(log_file) if log_file else user_cache_dir() / "logs" / f"serve-{stamp}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as error:
        logger.warning("cannot write the log file %s (%s); logging to stderr only", path, error)
        return None
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    warnings_logger.addHandler(handler)
    if not log_file:
        for old in sorted(path.parent.glob("serve-*.log"), key=lambda p: p.stat().st_mtime)[:-KEPT_LOG_FILES]:
            old.unlink(missing_ok=True)
    return str(path)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="speak the protocol on stdin/stdout (the default)")
    transport.add_argument("--listen", metavar="HOST:PORT", help="speak the protocol over TCP, e.g. 127.0.0.1:8765")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen on a non-loopback address (token-protected, unencrypted)",
    )
    parser.add_argument(
        "--token-file",
        help=f"where --listen writes its token, mode 0600 (default: the cache folder; {TOKEN_ENV} sets the token)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    parser.add_argument("--model-dir", help="folder holding the weights (default: the download folder)")
    parser.add_argument("--plan", default="auto", help="memory plan: auto, gpu, stream or cpu (default: auto)")
    parser.add_argument("--device", help="torch device, e.g. cuda:1 or cpu (default: the first GPU, else cpu)")
    parser.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    parser.add_argument("--log-file", help="log here instead of a new file in the cache folder")
    parser.add_argument("--precision", choices=("bf16", "fp32"), help="the DiT's number format (default: the plan's)")
    parser.add_argument("--compile", action="store_true", dest="compile_dit",
                        help="torch.compile the DiT on GPU plans: faster for large batches after a minute of compiling")
    parser.add_argument("--preload", action="store_true",
                        help="load the model right after start-up instead of at the first generate (a generate sent "
                        "meanwhile waits for it); status says 'loading' until it is ready")


def serve_main(args: argparse.Namespace) -> int:
    """Run the service until it is told to stop; 0 on a clean stop, 2 for bad arguments.

    Once torch is loaded a clean stop ends the process right here (os._exit after flushing the logs): Python's own
    teardown of torch takes seconds, and the user is waiting for the GPU to be free or for a restart.
    """
    parent = os.getppid()
    log_file = _set_up_logging(args.log_file)
    options = ServeOptions(
        args.model, args.model_dir, args.plan, args.device, args.cache_dir, log_file, precision=args.precision,
        compile_dit=args.compile_dit, preload=args.preload,
    )
    log.info("hymotion %s serving (protocol %d, pid %d, model %s)", __version__, PROTOCOL_VERSION, os.getpid(),
             args.model)
    try:
        address = parse_listen_address(args.listen, args.allow_remote) if args.listen else None
        token = server_token() if address is not None else ""
        token_file = Path(args.token_file) if args.token_file else user_cache_dir() / "serve-token"
        if address is not None:
            write_token(token_file, token)
    except HyMotionError as error:
        print(f"hymotion serve: error: {error}", file=sys.stderr)
        return 2
    service = Service(options)
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, _frame: service.request_stop(f"signal {number}"))
    server = None
    if address is not None:
        if not is_loopback(address[0]):
            print(f"hymotion serve: warning: listening on {address[0]}, which other machines can reach; the token "
                  "is the only protection and the traffic is not encrypted (an ssh tunnel to 127.0.0.1 is safer).",
                  file=sys.stderr, flush=True)
        try:
            server = listen(*address)
        except OSError as error:
            print(f"hymotion serve: error: cannot listen on {args.listen}: {error.strerror or error}.\n"
                  "  hint: choose another port, or an address of this machine.", file=sys.stderr)
            return 2
    if server is None:
        serve_stdio(service, parent)
    else:
        route_standard_streams_away()
        service.start()
        print(f"hymotion serve: token written to {token_file}", file=sys.stderr, flush=True)
        announce(server)
        serve_tcp(service, server, token)
    stopped = service.stop()
    service.close_connections()
    log.info("stopped")
    logging.shutdown()
    sys.stderr.flush()
    if not stopped or "torch" in sys.modules:
        os._exit(0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hymotion serve", description="Serve HY-Motion generation to a client.")
    add_serve_arguments(parser)
    return serve_main(parser.parse_args(argv))
