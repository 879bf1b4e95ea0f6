-- An alert rule may be active only in a window of local time (the hub's time zone,
-- IOCHUB_ALERTS__TIMEZONE): from window_start to window_end, crossing midnight when the end
-- comes first (21:00-06:00), on the days it opens (ISO names; empty: every day). Outside it
-- the rule opens no alert, and an alert it opened resolves when its window closes.
ALTER TABLE alert_rule
    ADD COLUMN window_start time(0),
    ADD COLUMN window_end   time(0),
    ADD COLUMN window_days  text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT alert_rule_window_bounds CHECK (
        (window_start IS NULL) = (window_end IS NULL) AND window_start <> window_end
    ),
    ADD CONSTRAINT alert_rule_window_days CHECK (
        window_days <@ ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']
        AND (window_start IS NOT NULL OR cardinality(window_days) = 0)
    );

-- Why an alert resolved when its state alone does not say it (its rule's window closed).
ALTER TABLE alert ADD COLUMN resolved_reason text;
-- The periodic check that closes windows looks up a rule's open alerts.
CREATE INDEX alert_open_rule_idx ON alert (rule_id) WHERE state <> 'resolved';
