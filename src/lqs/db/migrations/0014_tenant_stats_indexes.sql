-- Indexes for the tenant API's reads (GET /v1/stats, GET /v1/suppressions).
--
-- The statistics already walk idx_leads_client_received and
-- idx_communications_client_created (checked with EXPLAIN). The suppression list is read
-- newest first in pages keyed by (created_at, id): without this index each page read
-- every suppression of the client and sorted them (5,000 rows for a page of 50).

CREATE INDEX idx_suppressions_client_created
    ON public.suppressions(client_id, created_at DESC, id DESC);
