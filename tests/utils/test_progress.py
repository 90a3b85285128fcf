"""pcseg.utils.progress: a normal tqdm bar on a terminal; elsewhere about ``lines`` whole lines
over a run (at 0, 10, ..., 100 %), whatever the number of steps or postfix updates."""

from __future__ import annotations

import io
import re

import pytest
from tqdm import tqdm

from pcseg.utils.progress import LogBar, progress_bar


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
