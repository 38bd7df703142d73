-- What each device's own self-test found it can do (see packages/protocol/src/capabilities.ts): placement
-- reads it, suppliers see it. NULL until the worker reports it (an agent that never does is not placed).
ALTER TABLE devices ADD COLUMN capabilities JSONB;
