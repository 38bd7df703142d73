-- The id the gateway answered a request with (its x-request-id header, and the request's log lines), so a
-- receipt, a log line and what the caller saw can be matched. NULL for receipts written before it was kept.
ALTER TABLE inference_receipts ADD COLUMN request_id TEXT;
