-- Fan-out (CONTRACT §12): a rule with `"continue": true` lets evaluation go on after it
-- matches, so one event may run several actions. 0 for every existing rule: routing of
-- stored rules is unchanged.
ALTER TABLE routing_rules ADD COLUMN continue_after_match INTEGER NOT NULL DEFAULT 0;
