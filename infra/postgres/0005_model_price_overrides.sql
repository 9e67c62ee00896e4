-- Per-project model prices (PUT /api/v1/model-prices), read by the processors every few seconds.
-- model_pattern is a model name matched as the shipped table matches its entries: the name itself,
-- optionally followed by a dated-snapshot suffix ("gpt-4o" prices "gpt-4o-2024-08-06"); provider ''
-- applies to every provider. prices has the keys of core/model_prices.json (USD per 1M tokens);
-- tiers is a list of {above_input_tokens, prices} for long-context pricing.
ALTER TABLE model_prices ADD COLUMN IF NOT EXISTS tiers JSONB NOT NULL DEFAULT '[]';
ALTER TABLE model_prices ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
