-- GET /v1/stats at size (bench/tenant_api.py: a client with 1,000,000 leads and 3,000,000
-- communications; docs/BENCHMARKS.md, "Tenant API (issue 15)").
--
-- Complaints: the statistics probed the provider events once per message in the range (a
-- million probes for 30 days of the large client); they now read the client's complaints
-- once, from this small partial index, and look each message up in a hash.
CREATE INDEX idx_provider_events_complaints ON public.provider_events(client_id, communication_id)
    WHERE kind = 'complained';

-- The leads of a range, by status, and the funnel's qualified leads: an index-only scan
-- when the index carries the status and the id (measured at 200,000 leads: 194 -> 65 ms
-- for leads by outcome, 349 -> 139 ms for the funnel). Same key as before, so every
-- other reader of the index is served as it was; status is indexed already
-- (idx_leads_queued's predicate), so no update that was HOT stops being HOT.
DROP INDEX public.idx_leads_client_received;
CREATE INDEX idx_leads_client_received ON public.leads(client_id, received_at DESC)
    INCLUDE (status, id);

-- The communications table is the seed's, index for index (test_verify checks it both
-- ways), so it gets no covering index: a copy of idx_communications_client_created that
-- INCLUDEs (status, provider, type, id) took delivery_counts from 271 to 109 ms at
-- 600,000 messages, but would make the table differ from the seed's.
