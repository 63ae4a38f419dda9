-- Sending: leases and attempt numbers on the delivery queue, the attempts history, and
-- the push subscriptions the push channel sends to.

-- ---------------------------------------------------------------- delivery_queue
-- A claim sets the lease and pushes next_attempt_at to the lease's end, so a row is due
-- again exactly when its lease expires: one condition, one index. Every claim counts an
-- attempt; an outcome is recorded only by the holder of the latest attempt's lease.
ALTER TABLE public.delivery_queue
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN to_lead boolean NOT NULL DEFAULT false,
    ADD COLUMN last_error text,
    ADD COLUMN batch_key text;

COMMENT ON COLUMN public.delivery_queue.batch_key IS
    'The provider batch this communication was sent in: its retries replay that batch';

COMMENT ON COLUMN public.delivery_queue.attempts IS
    'Claims so far; the claim''s number identifies the attempt whose lease may record an outcome';
COMMENT ON COLUMN public.delivery_queue.to_lead IS
    'The message goes to the lead (its consent is checked again before sending)';

-- communication -> client already cascades; this key only cost a lookup per queued row.
ALTER TABLE public.delivery_queue DROP CONSTRAINT delivery_queue_client_id_fkey;

-- ---------------------------------------------------------------- delivery_attempts
CREATE TABLE public.delivery_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    communication_id uuid NOT NULL REFERENCES public.communications(id) ON DELETE CASCADE,
    client_id uuid NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    provider varchar(50) NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    http_status integer,
    error_code text,
    error_message text,
    latency_ms double precision NOT NULL CHECK (latency_ms >= 0),
    outcome text NOT NULL CHECK (outcome IN ('accepted', 'transient', 'permanent')),
    recorded boolean NOT NULL,
    UNIQUE (communication_id, attempt)
);

CREATE INDEX idx_delivery_attempts_client_id ON public.delivery_attempts(client_id);

COMMENT ON TABLE public.delivery_attempts IS
    'Every call made to a provider for a communication, whatever came of it';
COMMENT ON COLUMN public.delivery_attempts.recorded IS
    'false when the worker''s lease had expired: the outcome was not applied to the communication';

-- ---------------------------------------------------------------- provider_batches
-- A batch request (Resend's POST /emails/batch) exactly as first sent, stored before it is
-- sent: a retry of any member replays it byte for byte under the same Idempotency-Key, so
-- the provider answers with the first result instead of sending again.
CREATE TABLE public.provider_batches (
    batch_key text PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    provider varchar(50) NOT NULL,
    -- json, not jsonb: the exact text that was sent, so that a replay is byte for byte.
    payload json NOT NULL,
    members uuid[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_provider_batches_client_id ON public.provider_batches(client_id);

COMMENT ON TABLE public.provider_batches IS
    'Batch requests as first sent, replayed verbatim (same idempotency key) by retries';

-- ---------------------------------------------------------------- push_subscriptions
CREATE TABLE public.push_subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    endpoint text NOT NULL CHECK (endpoint ~ '^https?://' AND length(endpoint) <= 2048),
    p256dh text NOT NULL CHECK (length(p256dh) BETWEEN 20 AND 200),
    auth text NOT NULL CHECK (length(auth) BETWEEN 8 AND 100),
    label text CHECK (length(label) <= 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    gone_at timestamptz,
    UNIQUE (client_id, endpoint)
);

COMMENT ON TABLE public.push_subscriptions IS
    'Browser push subscriptions of a client''s staff; gone_at is set when the push service answers 404/410';

-- ---------------------------------------------------------------- privileges and RLS
GRANT SELECT ON public.delivery_attempts, public.push_subscriptions TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.delivery_attempts, public.push_subscriptions, public.provider_batches
    TO service_role;

ALTER TABLE public.delivery_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.push_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.provider_batches ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Service role can manage all provider batches" ON public.provider_batches
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view delivery attempts for their client" ON public.delivery_attempts
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all delivery attempts" ON public.delivery_attempts
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view push subscriptions for their client" ON public.push_subscriptions
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all push subscriptions" ON public.push_subscriptions
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
