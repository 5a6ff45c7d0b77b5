"""bench.callback_instructions: reading callgrind's totals, the per-callback difference, the
ASGI driver, and one quick run against the real app (no valgrind)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.callback_instructions import callgrind_total, drive, main, per_callback


def test_the_total_is_read_from_a_callgrind_summary_or_totals_line() -> None:
    assert callgrind_total("# callgrind format\nevents: Ir\nsummary: 1234567\n") == 1234567
    assert callgrind_total("events: Ir\nfl=x\n1 5\ntotals: 42\n") == 42


def test_a_file_without_a_total_is_refused() -> None:
    with pytest.raises(ValueError, match="not a callgrind output file"):
        callgrind_total("events: Ir\nfl=x\n")


def test_one_callback_is_the_difference_of_the_two_runs_over_the_callbacks_added() -> None:
    assert per_callback(1_000_000, 1_600_000, 1_000) == 600.0


def test_a_larger_run_counting_no_more_is_refused() -> None:
    with pytest.raises(ValueError, match="not more than"):
        per_callback(2_000, 2_000, 10)


class RecordingApp:
    """An ASGI app with a lifespan, answering `status` to every request and noting its paths."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.paths: list[str] = []
        self.lifespan: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})


def test_the_driver_starts_the_app_sends_every_path_once_and_stops_it() -> None:
    app = RecordingApp()
    paths = [f"/callbacks/isograd/t{n}" for n in range(100)]

    timings = asyncio.run(drive(app, paths, ["/warm"]))

    assert app.paths[0] == "/warm"
    assert sorted(app.paths[1:]) == sorted(paths)
    assert app.lifespan == ["lifespan.startup", "lifespan.shutdown"]
    assert set(timings) == {"cpu_seconds", "wall_seconds"}
    assert timings["wall_seconds"] > 0


def test_the_driver_fails_on_a_callback_not_answered_200() -> None:
    with pytest.raises(AssertionError, match=r"answered \[503\]"):
        asyncio.run(drive(RecordingApp(status=503), ["/callbacks/isograd/t"], []))


def test_a_quick_run_against_the_relay_app_answers_every_callback(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("BENCH_EXPERIMENT", raising=False)

    assert main(["--callbacks", "8", "--cpu-only"]) == 0

    out = capsys.readouterr().out
    assert "8 unique callbacks in one process" in out
    assert "instructions per callback: not counted (--cpu-only)" in out
    assert "CPU per callback without valgrind: " in out
