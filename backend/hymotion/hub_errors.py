"""A weights download that cannot reach the hub, in words: which host, that proxies and HF_ENDPOINT apply, and the
offline path (copy the weights into the model folder), instead of huggingface_hub's generic text and a traceback
(issue 26)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .shared.errors import WEIGHTS_MISSING, HyMotionError

_CONNECTION_ERRORS = ("ConnectError", "ConnectTimeout", "ConnectionError", "ProxyError", "ReadTimeout",
                      "Timeout", "TimeoutException", "SSLError", "NameResolutionError", "gaierror")
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_host() -> str:
    """The host downloads go to: HF_ENDPOINT's, else the hub's own."""
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except (ImportError, AttributeError):
        endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)
    return urlsplit(endpoint).netloc or endpoint


def _causes(error: BaseException):
    seen = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def is_unreachable(error: BaseException) -> bool:
    """Whether a download failed because the host could not be reached (no network, DNS, proxy, timeout): any
    connection error in its chain, or huggingface_hub's 'cannot find the snapshot locally' that follows one."""
    names = {type(cause).__name__ for cause in _causes(error)}
    return bool(names & set(_CONNECTION_ERRORS)) or "LocalEntryNotFoundError" in names


def _reason(error: BaseException) -> str:
    for cause in _causes(error):
        if type(cause).__name__ in _CONNECTION_ERRORS:
            return f"{type(cause).__name__}: {str(cause).strip().rstrip('.')}"
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__


def unreachable_error(error: BaseException, repo_id: str, folders: str) -> HyMotionError:
    """The error to show for a download that could not reach the hub. ``folders`` names what to copy by hand."""
    host = hub_host()
    return HyMotionError(
        WEIGHTS_MISSING,
        f"Could not reach {host} to download {repo_id} ({_reason(error)}).",
        f"Check this computer's connection to {host}. Behind a proxy, HTTPS_PROXY applies (set before Blender or "
        f"the command starts); a mirror of the hub is set with HF_ENDPOINT. Without internet: copy the weights "
        f"({folders}, side by side) from a "
        "machine that has them into one folder and choose that folder as Model Folder (CLI: --model-dir).",
    )
