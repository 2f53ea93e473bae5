"""Errors that cross a boundary (CLI exit codes, protocol `error` events) carry a stable code, a message and a hint."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

BAD_REQUEST = "bad_request"
WEIGHTS_MISSING = "weights_missing"
BAD_CHECKPOINT = "bad_checkpoint"
OUT_OF_MEMORY = "out_of_memory"
CANCELLED = "cancelled"
BACKEND_DIED = "backend_died"
INTERNAL = "internal"

USER_ERROR_CODES = frozenset({BAD_REQUEST, WEIGHTS_MISSING, BAD_CHECKPOINT})

# What to do, per code, for an error raised without a more specific hint: no error ever reaches a user without one.
DEFAULT_HINTS = {
    BAD_REQUEST: "Check the values against `hymotion generate --help` or docs/protocol.md.",
    WEIGHTS_MISSING: "Run `hymotion download`, or point --model-dir at a folder that holds the weights.",
    BAD_CHECKPOINT: "Re-download the weights with `hymotion download`; `hymotion doctor` checks the files.",
    OUT_OF_MEMORY: "Pick a leaner plan (stream or cpu), shorter clips or fewer seeds per job.",
    CANCELLED: "Results already sent stay valid; submit the job again to redo it.",
    # the add-on starts a new backend at the next Generate, with nothing for the user to do
    BACKEND_DIED: (
        "Generate again: the backend restarts by itself. If it keeps stopping, run the Doctor report in the add-on "
        "preferences."
    ),
    INTERNAL: "This is a bug; please report it with the backend log.",
}


class HyMotionError(Exception):
    """An error the user can act on: ``code`` is stable, ``hint`` says what to do, ``field`` names the culprit."""

    def __init__(self, code: str, message: str, hint: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint or DEFAULT_HINTS.get(code, DEFAULT_HINTS[INTERNAL])
        self.field = field

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


def bad_request(message: str, hint: str = "", field: str | None = None) -> HyMotionError:
    """A refused input; ``field`` names the request field (as on the wire) when there is one."""
    return HyMotionError(BAD_REQUEST, message, hint, field)


def run_command(program: str, action: Callable[[], int]) -> int:
    """Run a command-line action: a HyMotionError prints its message and hint (exit 2 for user errors, else 1).

    SIGTERM unwinds like Ctrl-C (SIGINT), so that ``finally`` blocks run either way: child processes are ended,
    scratch folders and half-written temporary files removed.
    """
    previous = _interrupt_on_sigterm()
    try:
        return action()
    except HyMotionError as error:
        print(f"{program}: error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return 2 if error.code in USER_ERROR_CODES else 1
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm():
    """Install the SIGTERM handler (main thread only); returns the one it replaced, None if none was replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(_number, _frame) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
