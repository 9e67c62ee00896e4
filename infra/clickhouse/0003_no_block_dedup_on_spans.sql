-- Insert-block dedup on spans dropped a re-inserted batch *together with its materialized-view pushes*
-- after a crash had committed the spans part but not the views' parts (seen: kill -9 mid-insert,
-- metrics_1m short by one batch). Without it, the re-insert restores the views; the duplicate base
-- rows collapse in ReplacingMergeTree and in FINAL reads.
ALTER TABLE spans MODIFY SETTING non_replicated_deduplication_window = 0;
