-- Delivery events from the providers' webhooks, and the append-only consent history.

-- ---------------------------------------------------------------- provider_events
-- Every verified event, raw, once: the unique key is the provider's own event id, so a
-- re-delivered event inserts nothing and has no second effect. An event whose message is
-- not known yet (it can arrive before our own record of the send) is kept with
-- communication_id NULL and applied when the send is recorded.
CREATE TABLE public.provider_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    provider varchar(50) NOT NULL,
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    communication_id uuid REFERENCES public.communications(id) ON DELETE CASCADE,
    message_id text,
    event_type text NOT NULL,
    kind text NOT NULL,
    recipient text,
    occurred_at timestamptz,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    effect text,
    UNIQUE (client_id, provider, event_id)
);

CREATE INDEX idx_provider_events_communication_id ON public.provider_events(communication_id);
CREATE INDEX idx_provider_events_unmatched ON public.provider_events(client_id, provider, message_id)
    WHERE communication_id IS NULL;

COMMENT ON TABLE public.provider_events IS
    'Verified provider webhook events, raw and deduplicated by the provider''s event id';
COMMENT ON COLUMN public.provider_events.effect IS
    'What applying the event did: the new status, "suppressed", or "no change"';

-- ---------------------------------------------------------------- consent_history
CREATE TABLE public.consent_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    lead_id uuid REFERENCES public.leads(id) ON DELETE CASCADE,
    channel varchar(20) NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
    recipient varchar(255) NOT NULL,
    consent_status varchar(20) NOT NULL
        CHECK (consent_status IN ('granted', 'denied', 'unknown', 'withdrawn')),
    source text NOT NULL CHECK (length(source) BETWEEN 1 AND 100),
    communication_id uuid,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_consent_history_client_id ON public.consent_history(client_id, recorded_at);
CREATE INDEX idx_consent_history_lead_id ON public.consent_history(lead_id);

COMMENT ON TABLE public.consent_history IS
    'Append-only record of consent changes (unsubscribe links, provider unsubscribes)';

-- Append-only: no UPDATE, and no DELETE except the cascade from a deleted client or lead
-- (the referential action runs as a trigger, so this trigger then runs nested).
CREATE FUNCTION public.consent_history_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_history is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER consent_history_append_only
    BEFORE UPDATE OR DELETE ON public.consent_history
    FOR EACH ROW EXECUTE FUNCTION public.consent_history_append_only();

-- ---------------------------------------------------------------- privileges and RLS
GRANT SELECT ON public.provider_events, public.consent_history TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.provider_events TO service_role;
GRANT SELECT, INSERT ON public.consent_history TO service_role;

ALTER TABLE public.provider_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.consent_history ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view provider events for their client" ON public.provider_events
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all provider events" ON public.provider_events
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view consent history for their client" ON public.consent_history
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can read and append consent history" ON public.consent_history
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
