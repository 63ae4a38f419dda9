-- The audit log: what a client's admins did through the tenant API.
--
-- One row per admin action (a communication re-driven, a suppression lifted, an API key
-- created or revoked): who (the user's id, the JWT's sub), for which client, what, on
-- which row, and the details worth keeping (never a secret: a new key's prefix, not the
-- key). Rows are written by the service role, in the same transaction as the action and
-- after the action was checked as the user under row-level security; users have no
-- INSERT policy, so nobody can write an entry the service did not. Append-only: the
-- service role may read and insert, not update or delete (a client's deletion cascades).

-- ---------------------------------------------------------------- audit_log
CREATE TABLE public.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    -- The acting user; not a foreign key, so an entry outlives its user's profile.
    user_id uuid,
    action text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)*$' AND length(action) <= 64),
    target_id uuid,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE public.audit_log FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.audit_log_id_seq FROM PUBLIC, anon, authenticated, service_role;

CREATE INDEX idx_audit_log_client_created ON public.audit_log(client_id, created_at DESC);

COMMENT ON TABLE public.audit_log IS
    'Admin actions through the tenant API: who, which client, what, on which row; append-only';

-- ---------------------------------------------------------------- privileges and RLS
-- (Supabase's default grants were taken back right after the CREATE TABLE.)
GRANT SELECT ON public.audit_log TO authenticated;
GRANT SELECT, INSERT ON public.audit_log TO service_role;

ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view the audit log for their client" ON public.audit_log
    FOR SELECT TO authenticated USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can read and append the audit log" ON public.audit_log
    FOR ALL TO service_role USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
