"""Reports: a checkpointed job aggregates raw events into daily count tables; report queries read only those."""
