-- Tenants (clients), their users (profiles) and their leads, each isolated by
-- row-level security with policies of the seed's shape.

CREATE FUNCTION public.lqs_set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$fn$;

-- ---------------------------------------------------------------- clients
CREATE TABLE public.clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(200) NOT NULL CHECK (length(btrim(name)) > 0),
    slug varchar(63) NOT NULL UNIQUE
        CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    -- Notification addresses, scoring rules, provider choice, time zone, ...
    settings jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.clients IS 'Tenants: every other row belongs to exactly one client';
COMMENT ON COLUMN public.clients.settings IS
    'Per-client configuration: notification addresses, scoring rules, providers, time zone';

CREATE TRIGGER trigger_clients_updated_at
    BEFORE UPDATE ON public.clients
    FOR EACH ROW EXECUTE FUNCTION public.lqs_set_updated_at();

-- ---------------------------------------------------------------- profiles
CREATE TABLE public.profiles (
    -- The user's id: auth.users.id on Supabase, the JWT's sub everywhere.
    id uuid PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    email varchar(320),
    role varchar(20) NOT NULL DEFAULT 'member'
        CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_profiles_client_id ON public.profiles(client_id);

COMMENT ON TABLE public.profiles IS 'Maps a user (JWT sub) to the client whose rows they may see';

CREATE TRIGGER trigger_profiles_updated_at
    BEFORE UPDATE ON public.profiles
    FOR EACH ROW EXECUTE FUNCTION public.lqs_set_updated_at();

-- ---------------------------------------------------------------- leads
CREATE TABLE public.leads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,

    -- Contact
    email varchar(320),
    phone varchar(20),
    first_name varchar(100),
    last_name varchar(100),
    job_title varchar(200),

    -- Company
    company_name varchar(200),
    company_domain varchar(255),
    company_size integer CHECK (company_size >= 0),
    industry varchar(100),
    country varchar(2) CHECK (country ~ '^[A-Z]{2}$'),

    -- Source and attribution
    source varchar(100),
    utm_source varchar(255),
    utm_medium varchar(255),
    utm_campaign varchar(255),
    utm_term varchar(255),
    utm_content varchar(255),
    custom jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(custom) = 'object'),

    -- Consent
    consent_status varchar(20) NOT NULL DEFAULT 'unknown'
        CHECK (consent_status IN ('granted', 'denied', 'unknown', 'withdrawn')),
    consent_source varchar(255),
    consent_at timestamptz,

    -- Qualification
    status varchar(20) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'qualified', 'nurture', 'disqualified', 'error')),
    score integer,
    grade varchar(20),
    score_breakdown jsonb,
    error_message text,

    -- Deduplication within a client, and the trail of merged submissions
    dedupe_key varchar(400),
    history jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(history) = 'array'),

    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT leads_reachable CHECK (email IS NOT NULL OR phone IS NOT NULL)
);

CREATE INDEX idx_leads_client_id ON public.leads(client_id);
CREATE INDEX idx_leads_client_received ON public.leads(client_id, received_at DESC);
CREATE INDEX idx_leads_client_dedupe ON public.leads(client_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
-- The processor's claim reads only queued leads, oldest first: this index stays the
-- size of the backlog however many processed leads the table holds.
CREATE INDEX idx_leads_queued ON public.leads(received_at, id) WHERE status = 'queued';

COMMENT ON TABLE public.leads IS 'Leads received from forms and imports, and their qualification';
COMMENT ON COLUMN public.leads.score_breakdown IS
    'Why the lead scored as it did: one entry per rule that matched';
COMMENT ON COLUMN public.leads.dedupe_key IS 'Client-scoped key (normalised email) for deduplication';

CREATE TRIGGER trigger_leads_updated_at
    BEFORE UPDATE ON public.leads
    FOR EACH ROW EXECUTE FUNCTION public.lqs_set_updated_at();

-- ---------------------------------------------------------------- privileges
-- Table privileges open the door; the policies below decide which rows are behind it.
-- anon gets no table privileges at all.
-- Users may change what a person would edit; qualification columns (status, score,
-- breakdown, history, dedupe key) belong to LQS alone.
GRANT SELECT ON public.clients TO authenticated;
GRANT UPDATE (name, settings) ON public.clients TO authenticated;
GRANT SELECT ON public.profiles TO authenticated;
GRANT SELECT ON public.leads TO authenticated;
GRANT INSERT (id, client_id, email, phone, first_name, last_name, job_title, company_name,
              company_domain, company_size, industry, country, source, utm_source,
              utm_medium, utm_campaign, utm_term, utm_content, custom, consent_status,
              consent_source, consent_at)
    ON public.leads TO authenticated;
GRANT UPDATE (client_id, email, phone, first_name, last_name, job_title, company_name,
              company_domain, company_size, industry, country, source, utm_source,
              utm_medium, utm_campaign, utm_term, utm_content, custom, consent_status,
              consent_source, consent_at)
    ON public.leads TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.clients, public.profiles, public.leads
    TO service_role;

-- ---------------------------------------------------------------- row-level security
ALTER TABLE public.clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.leads ENABLE ROW LEVEL SECURITY;

-- profiles may only refer to the caller's own row: a policy on profiles that read
-- profiles would recurse. Every other table reaches the client through it.
CREATE POLICY "Users can view their own profile" ON public.profiles
    FOR SELECT USING (id = (SELECT auth.uid()));

CREATE POLICY "Service role can manage all profiles" ON public.profiles
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view their client" ON public.clients
    FOR SELECT USING (
        id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );

CREATE POLICY "Admins can update their client" ON public.clients
    FOR UPDATE USING (
        id IN (
            SELECT p.client_id FROM public.profiles p
            WHERE p.id = (SELECT auth.uid()) AND p.role IN ('owner', 'admin')
        )
    )
    WITH CHECK (
        id IN (
            SELECT p.client_id FROM public.profiles p
            WHERE p.id = (SELECT auth.uid()) AND p.role IN ('owner', 'admin')
        )
    );

CREATE POLICY "Service role can manage all clients" ON public.clients
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

CREATE POLICY "Users can view leads for their client" ON public.leads
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );

CREATE POLICY "Users can add leads for their client" ON public.leads
    FOR INSERT WITH CHECK (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );

-- WITH CHECK as well as USING: without it an update could move a lead to another client.
CREATE POLICY "Users can update leads for their client" ON public.leads
    FOR UPDATE USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    )
    WITH CHECK (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );

CREATE POLICY "Service role can manage all leads" ON public.leads
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
