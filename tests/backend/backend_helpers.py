"""Shared helpers for the backend tests (a module of its own: every test folder has a conftest.py)."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from hymotion.shared.jobs import GenerationSettings


def settings(prompts=("a person walks",), durations=(2.0,), seeds=(0,), steps=6, cfg=5.0, smoothing=True):
    return GenerationSettings(
        list(prompts), list(durations), list(seeds), cfg_scale=cfg, steps=steps, smoothing=smoothing
    )


def random_unit_quaternions(rng: np.random.Generator, shape) -> np.ndarray:
    q = rng.normal(size=tuple(shape) + (4,))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def axis_angle_quaternion(axis, angle) -> np.ndarray:
    """(w, x, y, z) of a turn by ``angle`` radians (any shape) about ``axis``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    angle = np.asarray(angle, float)[..., None]
    return np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis], axis=-1)


# A trickling answer sends TRICKLE_BYTES spaces, one every TRICKLE_GAP_S seconds (6 s in all).
TRICKLE_GAP_S = 0.2
TRICKLE_BYTES = 30


class StubPrompter:
    """A local OpenAI-compatible chat endpoint that answers what the test tells it to."""

    def __init__(self) -> None:
        self.status = 200
        self.content = ""
        self.requests: list[tuple[str, dict, dict]] = []
        self.hang = threading.Event()
        self.release = threading.Event()
        self.redirect_to: str | None = None
        self.trickle_bytes = 0
        self.padding = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, dict(self.headers), body))
                if stub.hang.is_set():
                    stub.release.wait(timeout=10)
                    return
                if stub.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", stub.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content = stub.content + " " * stub.padding
                answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self._trickle(stub.trickle_bytes)
                    self.wfile.write(answer)
                except OSError:
                    return

            def _trickle(self, count: int) -> None:
                """``count`` spaces (valid JSON whitespace) one every TRICKLE_GAP_S: each read gets data long before
                any per-read timeout."""
                gap = threading.Event()
                for _ in range(count):
                    if stub.release.is_set():
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    gap.wait(TRICKLE_GAP_S)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()



def run_guardless_script(folder, plan: str, device: str) -> str:
    """Run a plain script, as library users write them (no ``if __name__ == "__main__":`` guard), in a fresh Python;
    returns its last line: the clip count and how many child processes are alive at the end."""
    script = Path(folder) / "make_motion.py"
    script.write_text(
        "import multiprocessing\n"
        "from hymotion.shared.jobs import GenerationSettings\n"
        "from hymotion.pipeline.loading import load_pipeline\n"
        f"pipeline = load_pipeline('tiny-random', plan={plan!r}, device={device!r}, cache_dir={str(folder)!r})\n"
        "settings = GenerationSettings(['a person waves', 'a person sits'], [1.0, 1.0], [0, 1], steps=2)\n"
        "clips = list(pipeline.generate(settings))\n"
        "print('clips', len(clips), 'children', len(multiprocessing.active_children()))\n",
        encoding="utf-8",
    )
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=folder)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, waiting for whoever inherited it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"
