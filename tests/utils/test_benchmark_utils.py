"""sod2.utils.benchmark: the shared timer (a fake clock with known call times) and the Markdown
result table (exact text), against hand-computed values."""
import io
import os

import pytest

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, Timing, environment_line, percentile, time_callable


class FakeClock:
    """Each call of the timed function advances the clock by the next duration; reading the
    clock costs nothing."""

    def __init__(self, durations):
        self.now = 100.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[self.calls]
        self.calls += 1


def test_median_and_spread_of_timed_calls_hand_values():
    # 2 warm-up calls (9 s, 7 s: excluded), then 5 timed calls of 0.5, 0.1, 0.4, 0.2, 0.3 s
    clock = FakeClock([9.0, 7.0, 0.5, 0.1, 0.4, 0.2, 0.3])
    t = time_callable(clock.work, iters=5, warmup=2, clock=clock)
    assert clock.calls == 7
    assert t.times == pytest.approx((0.5, 0.1, 0.4, 0.2, 0.3))
    # sorted 0.1 0.2 0.3 0.4 0.5: median 0.3; p25 at rank 1 = 0.2, p75 at rank 3 = 0.4
    assert t.median == pytest.approx(0.3)
    assert t.spread == pytest.approx(0.2)
    assert (t.min, t.max) == pytest.approx((0.1, 0.5))


def test_even_count_interpolates():
    # sorted 1 2 4 10: median (2 + 4) / 2 = 3; p25 at rank 0.75 = 1.75; p75 at rank 2.25 = 5.5
    t = Timing((10.0, 1.0, 4.0, 2.0))
    assert t.median == pytest.approx(3.0)
    assert t.spread == pytest.approx(5.5 - 1.75)
    assert percentile([7.0], 75) == 7.0 and Timing((7.0,)).spread == 0.0


def test_synchronize_runs_around_each_timed_call():
    events = []
    clock = FakeClock([1.0, 2.0, 3.0])

    def work():
        events.append("work")
        clock.work()

    t = time_callable(work, iters=2, warmup=1, clock=clock, synchronize=lambda: events.append("sync"))
    assert events == ["work", "sync", "work", "sync", "sync", "work", "sync"]
    assert t.times == (2.0, 3.0)


@pytest.mark.parametrize("iters,warmup,msg", [(0, 1, "--iters"), (3, -1, "--warmup")])
def test_bad_counts_are_user_errors(iters, warmup, msg):
    with pytest.raises(UserError, match=msg):
        time_callable(lambda: None, iters=iters, warmup=warmup)


def test_a_clock_going_backwards_is_refused():
    clock = FakeClock([-1.0])
    with pytest.raises(ValueError, match="clock"):
        time_callable(clock.work, iters=1, clock=clock)
    nan_clock = FakeClock([float("nan")])
    with pytest.raises(ValueError, match="clock"):
        time_callable(nan_clock.work, iters=1, clock=nan_clock)


def test_table_text_and_file(tmp_path):
    table = ResultTable(["model", "ms"], header="CPU: test", notes=["note a"])
    table.add_row(["YOLOX-S", 12.5])
    table.add_row(["a|b", "3"])
    expected = ("CPU: test\n\n| model | ms |\n|---|---|\n| YOLOX-S | 12.5 |\n| a\\|b | 3 |\n\nnote a\n")
    assert table.to_markdown() == expected
    out = io.StringIO()
    path = tmp_path / "sub" / "speed.md"
    assert table.write(str(path), stream=out) == expected
    assert out.getvalue() == expected
    assert path.read_text() == expected
    assert os.listdir(path.parent) == ["speed.md"]  # no temporary left behind
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        table.add_row([1, 2, 3])


def test_environment_line_names_versions_and_threads():
    import torch

    line = environment_line(torch_intra_op=3, onnxruntime_intra_op=3)
    assert f"torch {torch.__version__}" in line
    assert line.endswith("threads: torch_intra_op=3, onnxruntime_intra_op=3")
    assert "usable cores" in line
