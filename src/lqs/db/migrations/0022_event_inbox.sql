-- Delivery events as an inbox (issue 17): the webhook receiver only stores a request's
-- events (one statement) and wakes the worker, whose applier applies them in batches.

-- ---------------------------------------------------------------- provider_events
-- attempted_at: when the applier (or a send's acknowledgement) looked for the event's
-- communication. NULL, and no communication_id: pending, not looked at yet. Set with
-- communication_id NULL: no such message yet, the event waits for the send's
-- acknowledgement (as before).
-- error_code and named_communication_id keep what the parser read that the applier needs
-- and the payload may not hold (Twilio's lqs_id is in the callback's URL; erasure and
-- retention clear payloads): the provider's error code and our communication id when the
-- provider echoed it (not a foreign key: it is only a hint, checked against the client).
ALTER TABLE public.provider_events
    ADD COLUMN attempted_at timestamptz,
    ADD COLUMN error_code text CHECK (char_length(error_code) <= 2000),
    ADD COLUMN named_communication_id uuid;

-- Every event stored until now was applied, or found unmatched, when it arrived.
UPDATE public.provider_events SET attempted_at = coalesce(applied_at, received_at);

-- The applier's queue: pending events, oldest first.
CREATE INDEX idx_provider_events_pending ON public.provider_events (id)
    WHERE attempted_at IS NULL AND communication_id IS NULL;

COMMENT ON COLUMN public.provider_events.attempted_at IS
    'When the event was matched (or found to have no communication yet); NULL: pending';
COMMENT ON COLUMN public.provider_events.error_code IS
    'The provider''s error code as parsed (Twilio ErrorCode), for the applied reason';
COMMENT ON COLUMN public.provider_events.named_communication_id IS
    'Our communication id as the provider echoed it (SendGrid custom_args, Twilio lqs_id)';
