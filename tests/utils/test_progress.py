"""pcseg.utils.progress: a normal tqdm bar on a terminal; elsewhere about ``lines`` whole lines
over a run (at 0, 10, ..., 100 %), whatever the number of steps or postfix updates."""

from __future__ import annotations

import io
import re

import pytest
from tqdm import tqdm

from pcseg.utils.progress import LogBar, RateMeter, format_duration, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _counts(text: str) -> list[int]:
    """The step count ``n`` of every ``n/total`` line, asserting each is one whole bar line."""
    lines = text.splitlines()
    assert "\r" not in text and all(lines), repr(text[:200])
    return [int(re.search(r"(\d+)/\d+", line).group(1)) for line in lines]


@pytest.mark.parametrize("steps", [37, 200, 5000])
def test_updates_by_hand_write_a_line_every_ten_percent(steps):
    out = io.StringIO()
    bar = progress_bar(total=steps, desc="train", file=out, dynamic_ncols=True)
    assert isinstance(bar, LogBar)
    for i in range(steps):
        bar.update(1)
        bar.set_postfix(loss=f"{i / steps:.4f}")  # the trainer does this; no extra line
    bar.close()
    got = _counts(out.getvalue())
    # one line at the start, then one per ceil(steps / 10) steps, and the end once
    every = -(-steps // 10)
    assert got == [*range(0, steps, every), steps]
    assert 6 <= len(got) <= 12
    assert out.getvalue().splitlines()[-1].startswith("train: 100%")
    assert "loss=" in out.getvalue().splitlines()[-1]


def test_an_iterable_with_a_length_and_leave_false():
    out = io.StringIO()
    seen = sum(1 for _ in progress_bar(range(1000), desc="predict", file=out, leave=False))
    assert seen == 1000
    assert _counts(out.getvalue()) == list(range(0, 1001, 100))


def test_a_resumed_run_spreads_its_lines_over_the_remaining_steps():
    out = io.StringIO()
    bar = progress_bar(total=100, initial=60, file=out, lines=4)
    for _ in range(40):
        bar.update(1)
    bar.close()
    assert _counts(out.getvalue()) == [60, 70, 80, 90, 100]


def test_an_unknown_total_writes_a_line_per_interval():
    out = io.StringIO()
    n = sum(1 for _ in progress_bar((i for i in range(500)), file=out, interval_s=1e6))
    assert n == 500
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the start and the end; the interval never elapsed
    assert lines[0].startswith("0it") and lines[1].startswith("500it")


def test_on_a_terminal_it_is_a_plain_tqdm_bar():
    term = _Terminal()
    bar = progress_bar(range(50), file=term, dynamic_ncols=True)
    assert type(bar) is tqdm
    for _ in bar:
        pass
    assert term.getvalue().startswith("\r")  # carriage-return updates, as tqdm draws them


def test_disabled_writes_nothing():
    out = io.StringIO()
    for _ in progress_bar(range(100), file=out, disable=True):
        pass
    assert out.getvalue() == ""


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_meter_speed_time_to_go_and_one_first_report():
    clock = _Clock()
    m = RateMeter(total=110, first_its=10, first_s=30.0, clock=clock)
    clock.t += 5.0  # the first iteration carries the start-up
    m.mark(1)
    assert m.first_report() is None
    for it in range(2, 11):  # then 0.5 s per iteration
        clock.t += 0.5
        m.mark(it)
        if it < 10:
            assert m.first_report() is None
    assert m.rate() == pytest.approx(9 / 4.5)  # measured after the first iteration
    assert m.remaining_s() == pytest.approx(100 / 2.0)
    line = m.first_report()
    assert line == "10 iteration(s) in 10 s: 2 it/s; about 50 s to finish 110 iterations"
    assert m.first_report() is None  # once
    assert m.status() == "2 it/s (0.5 s/it), 50 s to go"


def test_rate_meter_reports_after_30_s_when_iterations_are_slow_and_after_resume():
    clock = _Clock()
    m = RateMeter(total=20000, start=500, clock=clock)
    clock.t += 32.5
    m.mark(501)  # one 32.5 s iteration: the only rate there is includes the start-up
    assert m.rate() == pytest.approx(1 / 32.5)
    line = m.first_report()
    assert line is not None and line.startswith("1 iteration(s) in 32 s: 0.0308 it/s")
    assert line.endswith(f"about {format_duration(19499 * 32.5)} to finish 20000 iterations")
    assert format_duration(19499 * 32.5) == "7.3 days"


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.4, "0 s"),
        (59.4, "59 s"),
        (65, "1 min 05 s"),
        (3599, "59 min 59 s"),
        (3600 * 3 + 20 * 60, "3 h 20 min"),
        (86400 * 7.5, "7.5 days"),
        (float("inf"), "?"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
