"""`hymotion serve`: the protocol server (command.py), its job core (core.py) and its transports (stdio.py, tcp.py)."""

from .command import add_serve_arguments, main, serve_main
from .connection import Connection
from .core import ServeOptions, Service
from .lines import serve_lines

__all__ = ["Connection", "ServeOptions", "Service", "add_serve_arguments", "main", "serve_lines", "serve_main"]
