-- A member that hands a partition over cleanly (a rebalance takes it, or SIGTERM) has finished and
-- committed every insert up to its progress there, and written nothing beyond. It says so here, and
-- the partition's next owner then rebuilds no minutes: the rebuild (delete + recompute of a minute)
-- is not atomic against the other members writing that same minute, so it is kept for crashes.
-- The next owner retires the row (offset -1) before it writes: its own first insert may be cut short.
CREATE TABLE IF NOT EXISTS sink_handover
(
    bus_source    LowCardinality(String),
    bus_partition UInt16,
    offset        Int64,  -- the partition's sink progress at the handover; -1: retired by the next owner
    at            DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (bus_source, bus_partition)
