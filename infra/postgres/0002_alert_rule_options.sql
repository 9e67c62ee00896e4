-- Re-send "still firing" after each cooldown; how many previous windows form an anomaly baseline.
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS renotify BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS baseline_windows INTEGER NOT NULL DEFAULT 12;
