-- Background merges rewrite every span once per merge level: at 5,000 spans/s they took a third of
-- the processor's process CPU (perf: MergeMutate threads), more than the inserts. A merge base of 10
-- instead of 5 waits for about twice as many parts of a size before merging them, so a span is
-- rewritten fewer times (log10 instead of log5 of the part growth): chDB's CPU for the same insert
-- stream (1,300-span inserts, 4 a second) went from 0.50 to 0.40-0.44 cores. The cost: up to about
-- twice as many active parts per partition level, which reads skip by partition, key and index.
-- The two tables that hold every span's payload carry the merge volume; the small ones keep the default.
ALTER TABLE spans MODIFY SETTING merge_selector_base = 10;
ALTER TABLE trace_spans MODIFY SETTING merge_selector_base = 10
