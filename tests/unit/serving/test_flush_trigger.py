"""The impression flusher writes small batches early instead of one large burst per interval."""
from recommender.serving.impressions import FLUSH_BATCH, should_flush


def test_waits_while_few_lists_are_queued_and_the_interval_runs():
    assert not should_flush(0, 0.1, 0.5)
    assert not should_flush(FLUSH_BATCH - 1, 0.49, 0.5)


def test_writes_once_a_batch_is_waiting():
    assert should_flush(FLUSH_BATCH, 0.01, 0.5)
    assert should_flush(5 * FLUSH_BATCH, 0.0, 0.5)


def test_writes_when_the_interval_is_up_even_for_one_list():
    assert should_flush(1, 0.5, 0.5)
    assert should_flush(0, 2.0, 0.5)  # nothing queued: flush() returns at once
