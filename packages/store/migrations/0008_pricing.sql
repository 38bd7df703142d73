-- How a supplier prices each device: 'fixed' (asking_price_micro_usd is the price) or 'auto' (the pricing
-- engine's price, never below asking_price_micro_usd when that is set).
ALTER TABLE devices ADD COLUMN pricing_mode TEXT NOT NULL DEFAULT 'fixed';
ALTER TABLE devices ADD CONSTRAINT devices_pricing_mode CHECK (pricing_mode IN ('fixed', 'auto'));
