-- Point reads (trace detail, trace lookups, a trace's scores) touch one granule per column of some
-- part; the first read of a part otherwise loads that part's marks from disk (measured: 70-107 ms
-- instead of ~27 ms for a trace detail). Marks are loaded when a part is written, merged or the engine
-- starts instead: 16 bytes per granule and column, ~1 MB per 10M spans.
ALTER TABLE spans MODIFY SETTING prewarm_mark_cache = 1;
ALTER TABLE trace_index MODIFY SETTING prewarm_mark_cache = 1;
ALTER TABLE scores MODIFY SETTING prewarm_mark_cache = 1
