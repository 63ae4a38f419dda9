-- GET /v1/stats counts the messages with a complaint (lqs.db.tenant_stats.delivery_counts).
-- It probed the provider events once per message in the range (3 million messages: as
-- many index probes); it now reads the client's complaints once and looks each message up
-- in a hash. Complaints are rare, so this partial index stays small.

CREATE INDEX idx_provider_events_complaints ON public.provider_events(client_id, communication_id)
    WHERE kind = 'complained';
