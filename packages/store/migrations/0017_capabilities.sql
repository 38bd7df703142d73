-- What each device's own self-test found it can do (see packages/protocol/src/capabilities.ts): placement
-- reads it, suppliers see it. NULL until the worker reports it (an agent that never does is not placed).
ALTER TABLE devices ADD COLUMN capabilities JSONB;

-- Reliability is NULL ("new") until a device has an hour of history; a number is the measured share of its
-- time online. Every value is recomputed by the coordinator at start.
ALTER TABLE devices ALTER COLUMN reliability DROP NOT NULL;
ALTER TABLE devices ALTER COLUMN reliability SET DEFAULT NULL;
UPDATE devices SET reliability = NULL;
