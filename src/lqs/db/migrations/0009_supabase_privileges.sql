-- Privileges that hold under Supabase's defaults.
--
-- A Supabase project runs `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES,
-- SEQUENCES, FUNCTIONS TO anon, authenticated, service_role`, so every object the earlier
-- migrations created there came with ALL (TRUNCATE included, which ignores row-level
-- security) for all three roles, and their column grants meant nothing. This migration
-- takes everything back and grants exactly what the policies need. Every later migration
-- does the same for what it creates: REVOKE ALL first, then the grants it means.
-- On plain PostgreSQL the revokes find nothing extra and the grants are those of
-- migrations 0002-0008, restated here in one place. Nothing here may assume LQS's own
-- runner applied it: exported with `lqs db export-supabase`, it runs under `supabase db push`.
-- The seed's own statements (0003) are untouched; only privileges on its table change.

-- ---------------------------------------------------------------- take everything back
REVOKE ALL ON TABLE
    public.clients, public.profiles, public.leads, public.communications,
    public.api_keys, public.idempotency_keys, public.lead_import_rows, public.templates,
    public.suppressions, public.delivery_queue, public.delivery_attempts,
    public.provider_batches, public.push_subscriptions, public.provider_events,
    public.consent_history, public.worker_heartbeats, public.webhook_rejects
    FROM PUBLIC, anon, authenticated, service_role;
-- lqs.schema_migrations is not here: a project migrated with `supabase db push` has no
-- such table. The runner's bookkeeping locks it down wherever it creates it.

-- Identity columns draw from these without any privilege on them: nobody needs one.
REVOKE ALL ON SEQUENCE
    public.delivery_attempts_id_seq, public.provider_events_id_seq,
    public.consent_history_id_seq, public.webhook_rejects_id_seq
    FROM PUBLIC, anon, authenticated, service_role;

-- Trigger functions run whatever the updating role may execute: nobody calls them directly.
REVOKE ALL ON FUNCTION
    public.lqs_set_updated_at(), public.update_communications_updated_at(),
    public.consent_history_append_only()
    FROM PUBLIC, anon, authenticated, service_role;

-- ---------------------------------------------------------------- grant exactly
-- anon: nothing. authenticated: read its client's rows (the policies pick them), edit the
-- person-facing columns of its leads, and (owners and admins, by policy) its client's
-- name and settings. service_role: what the services do, and never TRUNCATE.
GRANT SELECT ON TABLE
    public.clients, public.profiles, public.leads, public.communications,
    public.api_keys, public.templates, public.suppressions, public.delivery_queue,
    public.delivery_attempts, public.push_subscriptions, public.provider_events,
    public.consent_history, public.webhook_rejects
    TO authenticated;
GRANT UPDATE (name, settings) ON public.clients TO authenticated;
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

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
    public.clients, public.profiles, public.leads, public.communications,
    public.api_keys, public.idempotency_keys, public.lead_import_rows, public.templates,
    public.suppressions, public.delivery_queue, public.delivery_attempts,
    public.provider_batches, public.push_subscriptions, public.provider_events,
    public.worker_heartbeats, public.webhook_rejects
    TO service_role;
-- Consent history is append-only, for the service role too.
GRANT SELECT, INSERT ON public.consent_history TO service_role;

-- ---------------------------------------------------------------- Supabase's advisor
-- Scope each of LQS's policies to the role it is for, so a table has one permissive
-- policy per role and action (the advisor's multiple_permissive_policies) and anon is
-- never evaluated against them. The seed's two policies on communications stay as the
-- seed wrote them.
ALTER POLICY "Users can view their own profile" ON public.profiles TO authenticated;
ALTER POLICY "Service role can manage all profiles" ON public.profiles TO service_role;
ALTER POLICY "Users can view their client" ON public.clients TO authenticated;
ALTER POLICY "Admins can update their client" ON public.clients TO authenticated;
ALTER POLICY "Service role can manage all clients" ON public.clients TO service_role;
ALTER POLICY "Users can view leads for their client" ON public.leads TO authenticated;
ALTER POLICY "Users can add leads for their client" ON public.leads TO authenticated;
ALTER POLICY "Users can update leads for their client" ON public.leads TO authenticated;
ALTER POLICY "Service role can manage all leads" ON public.leads TO service_role;
ALTER POLICY "Users can view api keys for their client" ON public.api_keys TO authenticated;
ALTER POLICY "Service role can manage all api keys" ON public.api_keys TO service_role;
ALTER POLICY "Service role can manage all idempotency keys" ON public.idempotency_keys
    TO service_role;
ALTER POLICY "Service role can manage all lead import rows" ON public.lead_import_rows
    TO service_role;
ALTER POLICY "Users can view templates for their client" ON public.templates TO authenticated;
ALTER POLICY "Service role can manage all templates" ON public.templates TO service_role;
ALTER POLICY "Users can view suppressions for their client" ON public.suppressions
    TO authenticated;
ALTER POLICY "Service role can manage all suppressions" ON public.suppressions TO service_role;
ALTER POLICY "Users can view the delivery queue for their client" ON public.delivery_queue
    TO authenticated;
ALTER POLICY "Service role can manage the delivery queue" ON public.delivery_queue
    TO service_role;
ALTER POLICY "Service role can manage all provider batches" ON public.provider_batches
    TO service_role;
ALTER POLICY "Users can view delivery attempts for their client" ON public.delivery_attempts
    TO authenticated;
ALTER POLICY "Service role can manage all delivery attempts" ON public.delivery_attempts
    TO service_role;
ALTER POLICY "Users can view push subscriptions for their client" ON public.push_subscriptions
    TO authenticated;
ALTER POLICY "Service role can manage all push subscriptions" ON public.push_subscriptions
    TO service_role;
ALTER POLICY "Users can view provider events for their client" ON public.provider_events
    TO authenticated;
ALTER POLICY "Service role can manage all provider events" ON public.provider_events
    TO service_role;
ALTER POLICY "Users can view consent history for their client" ON public.consent_history
    TO authenticated;
ALTER POLICY "Service role can read and append consent history" ON public.consent_history
    TO service_role;
ALTER POLICY "Service role can manage worker heartbeats" ON public.worker_heartbeats
    TO service_role;
ALTER POLICY "Users can view webhook rejects for their client" ON public.webhook_rejects
    TO authenticated;
ALTER POLICY "Service role can manage all webhook rejects" ON public.webhook_rejects
    TO service_role;

-- A fixed, empty search path: a function cannot be steered by objects someone put
-- earlier on the caller's path (the advisor's function_search_path_mutable).
-- update_communications_updated_at() is the seed's and stays as written.
ALTER FUNCTION public.lqs_set_updated_at() SET search_path = '';

-- ---------------------------------------------------------------- auth belongs to Supabase Auth
-- An earlier 0001 created auth.jwt() (which LQS never used) and, where missing,
-- auth.uid(), auth.role() and the schema, owned by the migrating role. Supabase Auth's own
-- migrations replace and comment on them as supabase_auth_admin, which fails ("must be
-- owner of function jwt") while LQS owns them. Where that role exists, hand over what the
-- migrating role owns; nothing is dropped or replaced. A migrating role that may not give
-- them away gets a warning naming the statement to run, rather than a failed migration.
DO $handover$
DECLARE
    fn regprocedure;
    me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_auth_admin') THEN
        RETURN;
    END IF;
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth' AND nspowner = me) THEN
            ALTER SCHEMA auth OWNER TO supabase_auth_admin;
        END IF;
        FOREACH fn IN ARRAY ARRAY[
            to_regprocedure('auth.jwt()'), to_regprocedure('auth.uid()'),
            to_regprocedure('auth.role()')
        ] LOOP
            IF fn IS NOT NULL AND (SELECT proowner FROM pg_proc WHERE oid = fn) = me THEN
                EXECUTE format('ALTER FUNCTION %s OWNER TO supabase_auth_admin', fn);
            END IF;
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'LQS created objects in schema auth that Supabase Auth must own, and % '
            'may not hand them over: as a superuser, run ALTER FUNCTION auth.jwt() OWNER TO '
            'supabase_auth_admin (and the same for auth.uid(), auth.role() and SCHEMA auth '
            'where % owns them)', current_user, current_user;
    END;
END
$handover$;
