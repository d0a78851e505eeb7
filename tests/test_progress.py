"""Plain progress lines (no terminal): a line per quarter with the time spent and an estimate of what is left."""
from adapler import progress


def test_plain_progress_lines_estimate_time_left(monkeypatch, capsys):
    clock = iter(float(t) for t in range(0, 1000, 10))  # every perf_counter call is 10 s after the last
    monkeypatch.setattr("time.perf_counter", lambda: next(clock))
    monkeypatch.delenv("ADAPLER_QUIET", raising=False)
    assert list(progress._plain_progress(range(40), "epoch 1/2", 40)) == list(range(40))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["epoch 1/2: 10/40 (10 s, about 30 s left)", "epoch 1/2: 20/40 (20 s, about 20 s left)",
                     "epoch 1/2: 30/40 (30 s, about 10 s left)", "epoch 1/2: 40/40 (40 s)"]


def test_duration_units():
    assert [progress._duration(s) for s in (45, 720, 8280)] == ["45 s", "12 min", "2.3 h"]


def test_quiet_loops_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    assert list(progress._plain_progress(range(100), "x", 100)) == list(range(100))
    assert capsys.readouterr().err == ""


def test_log_keeps_a_long_line_whole(monkeypatch, capsys):
    """Status lines (the data summary, the defaults chosen) stay one line in a log file, whatever its width."""
    monkeypatch.delenv("ADAPLER_QUIET", raising=False)
    progress.log("word " * 60)
    assert capsys.readouterr().err.rstrip() == ("word " * 60).rstrip()
