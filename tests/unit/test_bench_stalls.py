"""bench/serving.py's stall attribution: which worker events the slowest requests ran into."""
import math

from bench.serving import read_worker_trace, stall_rows


def _trace(n=1000, slow_at=()):
    """One request every 10 ms taking 2 ms, except those at ``slow_at`` (indices) taking 20 ms."""
    out = []
    for i in range(n):
        due = i * 0.01
        out.append((due, due, due + (0.020 if i in slow_at else 0.002), 1.0))
    return out


def _by_event(rows):
    return {r[0]: r for r in rows}


def test_the_event_behind_the_slow_requests_stands_out():
    slow = {100, 300, 500, 700, 900, 950, 960, 970, 980, 990, 995, 998, 999, 50, 60, 70, 80, 90, 110, 120}
    events = [("flush", i * 0.01 + 0.001, i * 0.01 + 0.015) for i in sorted(slow)]
    events += [("flush", i * 0.01 + 0.001, i * 0.01 + 0.0015) for i in range(0, 1000, 7) if i not in slow]
    # collections inside fast requests only (a 20 ms request also spans the next two slots)
    quiet = [i for i in range(0, 1000, 3) if not {i, i - 1, i - 2} & slow]
    events += [("gc0", i * 0.01 + 0.0005, i * 0.01 + 0.0006) for i in quiet]
    rows = _by_event(stall_rows(_trace(slow_at=slow), events))
    flush, gc0, nothing = rows["flush"], rows["gc0"], rows["(nothing traced)"]
    assert flush[1] == len(events) - len(quiet) and gc0[1] == len(quiet)
    assert flush[4] == 1.0 and flush[3] < 0.2  # every slow request overlapped one; few of the rest
    assert gc0[4] == 0.0 and gc0[3] > 0.25  # frequent, but never where the time went
    assert nothing[4] == 0.0
    # the share of all requests, counted one request and one event at a time
    trace = _trace(slow_at=slow)
    expect = sum(any(w == "flush" and s < done and e > due for w, s, e in events) for due, _, done, _ in trace)
    assert math.isclose(flush[3], expect / len(trace))


def test_requests_overlapping_nothing_are_counted_as_such():
    rows = _by_event(stall_rows(_trace(slow_at={1, 2, 3}), [("refresh", 50.0, 50.1)]))
    assert rows["refresh"][3] == 0.0 and rows["refresh"][4] == 0.0
    assert rows["(nothing traced)"][3] == 1.0 and rows["(nothing traced)"][4] == 1.0


def test_no_trace_no_rows():
    assert stall_rows([], [("flush", 0.0, 1.0)]) == []


def test_the_worker_trace_file_is_read_as_gunicorn_trace_writes_it(tmp_path):
    path = tmp_path / "w.tsv"
    path.write_text("pid\twhat\tstart_s\tend_s\n12\tflush\t1.000000\t1.015000\n13\tgc2\t2.5\t2.58\n")
    assert read_worker_trace(path) == [("flush", 1.0, 1.015), ("gc2", 2.5, 2.58)]


def test_the_machine_speed_probe_measures_both_figures_and_leaves_no_child_behind():
    import os
    from pathlib import Path

    from bench._common import machine_speed

    def children() -> set[str]:
        tasks = Path(f"/proc/{os.getpid()}/task")
        return {c for t in tasks.iterdir() for c in (t / "children").read_text().split()}

    before = children()
    speed = machine_speed()
    assert set(speed) == {"python_loop_ms", "pipe_round_trip_us", "pipe_round_trip_p99_us"}
    assert 0 < speed["python_loop_ms"] < 10_000
    assert 0 < speed["pipe_round_trip_us"] <= speed["pipe_round_trip_p99_us"]
    assert children() <= before  # the echo child was reaped (other tests' children may come and go)
