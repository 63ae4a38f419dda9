-- Supabase compatibility: what a Supabase project already provides and LQS uses, created
-- only where missing. On Supabase every object below exists and nothing here touches it.
-- The auth service (Supabase Auth, as supabase_auth_admin) later replaces and comments on
-- auth.uid() and auth.role() and creates the rest of `auth`, so where its role exists,
-- what this creates in `auth` is handed to it, as its own setup would have made it.

DO $migration$
DECLARE
    auth_admin boolean := EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_auth_admin');
BEGIN
    -- Roles are cluster-wide: another database on the same server may have made them.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;

    -- The login role that runs LQS switches into these per transaction (SET LOCAL ROLE),
    -- as PostgREST's authenticator does; superusers are members of every role already.
    IF NOT pg_has_role(current_user, 'anon', 'MEMBER') THEN
        EXECUTE format('GRANT anon TO %I', current_user);
    END IF;
    IF NOT pg_has_role(current_user, 'authenticated', 'MEMBER') THEN
        EXECUTE format('GRANT authenticated TO %I', current_user);
    END IF;
    IF NOT pg_has_role(current_user, 'service_role', 'MEMBER') THEN
        EXECUTE format('GRANT service_role TO %I', current_user);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
        CREATE SCHEMA auth;
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
        IF auth_admin THEN
            ALTER SCHEMA auth OWNER TO supabase_auth_admin;
        END IF;
    END IF;

    -- Supabase's exact definitions (supabase/auth migrations).
    IF to_regprocedure('auth.uid()') IS NULL THEN
        CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            SET search_path = ''
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $fn$;
        COMMENT ON FUNCTION auth.uid() IS 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
        IF auth_admin THEN
            ALTER FUNCTION auth.uid() OWNER TO supabase_auth_admin;
        END IF;
    END IF;
    IF to_regprocedure('auth.role()') IS NULL THEN
        CREATE FUNCTION auth.role() RETURNS text
            LANGUAGE sql STABLE
            SET search_path = ''
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.role', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
            )::text
        $fn$;
        COMMENT ON FUNCTION auth.role() IS 'Deprecated. Use auth.jwt() -> ''role'' instead.';
        IF auth_admin THEN
            ALTER FUNCTION auth.role() OWNER TO supabase_auth_admin;
        END IF;
    END IF;
END
$migration$;
