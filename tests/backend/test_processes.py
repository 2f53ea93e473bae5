"""The one process-group helper (hymotion.shared.processes): ending a child ends what it started too."""

from __future__ import annotations

import os
import select
import subprocess
import sys

import pytest

from hymotion.shared.processes import end_group, own_group, signal_group

START_TIMEOUT_S = 30.0
# The child starts a grandchild that ignores nothing and sleeps, prints its pid and then sleeps itself.
PARENT = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(grandchild.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux (pidfd)")
@pytest.mark.parametrize("grace_s", [0.0, 5.0], ids=["kill", "terminate-then-kill"])
def test_ending_the_group_ends_the_child_and_its_children(grace_s):
    child = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, **own_group())
    try:
        grandchild = int(child.stdout.readline())
        assert os.getpgid(grandchild) == child.pid
        exited = os.pidfd_open(grandchild)  # readable once the grandchild has exited: an event, not a sleep
        try:
            code = end_group(child, grace_s)
            assert code != 0 and child.poll() is not None
            assert select.select([exited], [], [], START_TIMEOUT_S)[0], "the grandchild ends with its group"
        finally:
            os.close(exited)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_signalling_a_reaped_child_does_nothing():
    child = subprocess.Popen([sys.executable, "-c", "pass"], **own_group())
    child.wait(START_TIMEOUT_S)
    signal_group(child, kill=True)  # its pid may be another process's by now: never signalled
    assert end_group(child) == 0
