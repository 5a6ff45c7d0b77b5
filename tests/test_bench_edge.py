"""bench.callback_edge's helpers: the experiment names it accepts and the server's process tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.callback_edge import EXPERIMENTS, parse_experiments, process_tree


def test_experiments_are_comma_separated_names() -> None:
    assert parse_experiments(" no-log,no-store ,") == {"no-log", "no-store"}
    assert parse_experiments("") == set()


def test_an_unknown_experiment_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown BENCH_EXPERIMENT no-logs") as raised:
        parse_experiments("no-log,no-logs")
    assert all(name in str(raised.value) for name in EXPERIMENTS)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_the_process_tree_holds_children_and_their_children() -> None:
    # A child that starts a grandchild and waits for its stdin to close.
    script = (
        "import subprocess, sys\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],"
        " stdin=subprocess.PIPE)\n"
        "print(grandchild.pid, flush=True)\n"
        "sys.stdin.read()\n"
        "grandchild.stdin.close()\n"
        "grandchild.wait()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    with child.stdin, child.stdout:
        grandchild = int(child.stdout.readline())
        tree = process_tree(child.pid)
        assert tree[0] == child.pid
        assert grandchild in tree
        assert os.getpid() not in tree  # its parent is not part of it
    child.wait(timeout=30)
