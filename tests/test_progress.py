"""Tests of worker.cli.progress: the progress line on a terminal and in a log."""

from __future__ import annotations

import io

from worker.cli.progress import Progress


class Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_line_shows_bar_counts_per_outcome_and_rate() -> None:
    ticks = Ticks()
    progress = Progress(4, stream=Stream(tty=False), label="rows", clock=ticks)
    progress.advance("created")
    progress.advance("failed")

    line = progress.render(ticks.now + 2.0)

    assert line == f"[{'#' * 12}{'-' * 12}] 2/4 rows  50% | created 1, failed 1 | 1.0/s"


def test_terminal_line_is_redrawn_in_place_and_ended_on_finish() -> None:
    stream = Stream(tty=True)
    progress = Progress(2, stream=stream, clock=Ticks())

    progress.advance("created")
    progress.advance("created")
    progress.finish()

    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "\n" not in text[:-1]
    assert text.endswith("\n")
    assert text.rsplit("\r", 1)[1].startswith(f"[{'#' * 24}] 2/2 rows 100% | created 2 |")


def test_without_a_terminal_lines_are_written_at_most_once_per_interval() -> None:
    stream = Stream(tty=False)
    ticks = Ticks()
    progress = Progress(10, stream=stream, interval=5.0, clock=ticks)

    for _ in range(4):
        progress.advance("created")
        ticks.now += 2.0

    lines = stream.getvalue().splitlines()
    assert [line.split("]")[1].split(" rows")[0].strip() for line in lines] == ["1/10", "4/10"]


def test_finish_without_a_terminal_writes_the_final_count_once() -> None:
    stream = Stream(tty=False)
    progress = Progress(2, stream=stream, interval=60.0, clock=Ticks())
    progress.advance("created")
    progress.advance("existing")

    progress.finish()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "2/2 rows 100% | created 1, existing 1" in lines[-1]


def test_empty_run_reports_zero_of_zero() -> None:
    stream = Stream(tty=False)

    Progress(0, stream=stream, clock=Ticks()).finish()

    assert "0/0 rows 100%" in stream.getvalue()
