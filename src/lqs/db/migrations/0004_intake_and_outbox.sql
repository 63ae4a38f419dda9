-- Intake (API keys, idempotency records, lead deduplication) and the outbox side of
-- qualification (templates, suppressions, the delivery queue).

-- ---------------------------------------------------------------- lead deduplication
-- A lead is "open" while it is queued, qualified or in nurture: a new submission with the
-- same client and normalised email (or phone, when there is no email) merges into it.
-- A disqualified or failed lead is closed: the next submission starts a new lead.
CREATE UNIQUE INDEX idx_leads_open_dedupe ON public.leads(client_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'qualified', 'nurture');
DROP INDEX public.idx_leads_client_dedupe;

-- ---------------------------------------------------------------- api_keys
CREATE TABLE public.api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    name varchar(100) NOT NULL,
    -- The key's first characters, shown in listings so a key can be recognised.
    prefix varchar(16) NOT NULL,
    -- SHA-256 of the whole key: keys carry 256 random bits, so a slow hash adds nothing.
    key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    rate_limit_per_minute integer NOT NULL DEFAULT 600 CHECK (rate_limit_per_minute > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX idx_api_keys_client_id ON public.api_keys(client_id);

COMMENT ON TABLE public.api_keys IS 'Per-client intake keys; only a hash is stored';

-- ---------------------------------------------------------------- idempotency_keys
CREATE TABLE public.idempotency_keys (
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    key varchar(255) NOT NULL,
    request_hash bytea NOT NULL,
    status_code integer NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, key)
);

CREATE INDEX idx_idempotency_keys_created_at ON public.idempotency_keys(created_at);

COMMENT ON TABLE public.idempotency_keys IS
    'First response to each Idempotency-Key, replayed for 24 hours';

-- ---------------------------------------------------------------- lead_import_rows
-- Every CSV row ever imported for a client, by content hash: importing a file again
-- imports nothing twice, whatever became of the leads in between.
CREATE TABLE public.lead_import_rows (
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    row_hash bytea NOT NULL CHECK (length(row_hash) = 32),
    lead_id uuid REFERENCES public.leads(id) ON DELETE SET NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, row_hash)
);

CREATE INDEX idx_lead_import_rows_lead_id ON public.lead_import_rows(lead_id);

COMMENT ON TABLE public.lead_import_rows IS 'Content hashes of imported CSV rows, per client';

-- ---------------------------------------------------------------- templates
CREATE TABLE public.templates (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    template_id varchar(100) NOT NULL CHECK (template_id ~ '^[a-z0-9_]{1,100}$'),
    version integer NOT NULL CHECK (version >= 1),
    channel varchar(20) NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
    subject text,
    body text NOT NULL,
    body_format varchar(10) NOT NULL CHECK (body_format IN ('html', 'text')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, template_id, version)
);

COMMENT ON TABLE public.templates IS
    'Versioned per-client message templates; the highest version of an id is in use';

-- ---------------------------------------------------------------- suppressions
CREATE TABLE public.suppressions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    channel varchar(20) NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
    -- Normalised: lower-case email, E.164 phone, endpoint URL.
    recipient varchar(255) NOT NULL,
    reason varchar(20) NOT NULL
        CHECK (reason IN ('bounce', 'complaint', 'unsubscribe', 'manual')),
    source text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, channel, recipient)
);

COMMENT ON TABLE public.suppressions IS
    'Recipients a client must not contact again on a channel (bounces, complaints, unsubscribes)';

-- ---------------------------------------------------------------- delivery_queue
-- Dispatch bookkeeping for pending communications, kept out of the seed's table.
CREATE TABLE public.delivery_queue (
    communication_id uuid PRIMARY KEY
        REFERENCES public.communications(id) ON DELETE CASCADE,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    priority integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_delivery_queue_due ON public.delivery_queue(priority, next_attempt_at);
CREATE INDEX idx_delivery_queue_client_id ON public.delivery_queue(client_id);

COMMENT ON TABLE public.delivery_queue IS
    'One row per communication still to be sent: when it is due and who holds its lease';

-- ---------------------------------------------------------------- privileges and RLS
GRANT SELECT ON public.api_keys, public.templates, public.suppressions, public.delivery_queue
    TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.api_keys, public.idempotency_keys, public.lead_import_rows, public.templates,
       public.suppressions, public.delivery_queue
    TO service_role;

ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.lead_import_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.suppressions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.delivery_queue ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view api keys for their client" ON public.api_keys
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all api keys" ON public.api_keys
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Service role can manage all idempotency keys" ON public.idempotency_keys
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Service role can manage all lead import rows" ON public.lead_import_rows
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view templates for their client" ON public.templates
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all templates" ON public.templates
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view suppressions for their client" ON public.suppressions
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all suppressions" ON public.suppressions
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view the delivery queue for their client" ON public.delivery_queue
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage the delivery queue" ON public.delivery_queue
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
