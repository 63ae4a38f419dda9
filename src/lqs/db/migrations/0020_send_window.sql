-- Quiet hours and frequency caps (issue 16; decided in lqs/domain/send_rules.py).
--
-- - leads.time_zone: the lead's own IANA zone, when the form or file gives one; the
--   dispatcher reads a send window on that clock first.
-- - delivery_attempts.outcome 'deferred': a claim that did not call a provider because
--   the message was outside its send window (or over a deferring frequency cap); the
--   attempt's error_message says why and until when. The communication's retry_count is
--   untouched: a deferral is not a failure.
-- - recipient_sends: what a frequency cap counts. The seed's communications table has
--   no index on the recipient (and may not get one), so the dispatcher keeps this small
--   side table: one row per message accepted for a lead, kept 24 h, read by one indexed
--   query per claimed batch.

-- ---------------------------------------------------------------- leads
ALTER TABLE public.leads ADD COLUMN time_zone varchar(64);

COMMENT ON COLUMN public.leads.time_zone IS
    'The lead''s IANA time zone, if given: its send windows are read on this clock';

-- Users may set it as they set the lead's other fields (migration 0009's column grants).
GRANT INSERT (time_zone), UPDATE (time_zone) ON public.leads TO authenticated;

-- ---------------------------------------------------------------- delivery_attempts
ALTER TABLE public.delivery_attempts
    DROP CONSTRAINT delivery_attempts_outcome_check,
    ADD CONSTRAINT delivery_attempts_outcome_check
        CHECK (outcome IN ('started', 'accepted', 'transient', 'permanent', 'deferred'));

COMMENT ON COLUMN public.delivery_attempts.outcome IS
    'started: the request was about to be made and no answer was recorded (yet); '
    'deferred: no request, the message waits for its send window or frequency cap';

-- ---------------------------------------------------------------- recipient_sends
CREATE TABLE public.recipient_sends (
    communication_id uuid PRIMARY KEY
        REFERENCES public.communications(id) ON DELETE CASCADE,
    client_id uuid NOT NULL,
    channel varchar(20) NOT NULL,
    -- As lqs.domain.notifications.normalise_recipient gives it (the suppressions' form).
    recipient text NOT NULL,
    sent_at timestamptz NOT NULL
);

-- The cap's count: one range scan per recipient.
CREATE INDEX idx_recipient_sends_recipient
    ON public.recipient_sends(client_id, channel, recipient, sent_at);
-- The worker's purge of rows older than 24 h.
CREATE INDEX idx_recipient_sends_sent_at ON public.recipient_sends(sent_at);

COMMENT ON TABLE public.recipient_sends IS
    'Messages accepted for leads in the last 24 h, by client, channel and normalised '
    'recipient: what frequency caps count (purged by the worker after 24 h)';

-- The service's bookkeeping (it holds addresses): users and anon get nothing, even where
-- Supabase's default privileges grant every new table to them.
REVOKE ALL ON TABLE public.recipient_sends FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.recipient_sends TO service_role;

ALTER TABLE public.recipient_sends ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Service role can manage all recipient sends" ON public.recipient_sends
    FOR ALL TO service_role USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
