-- Sign-in without Supabase Auth: a user's password hash, and the state of their sign-ins.
--
-- A deployment without Supabase signs its users in itself (`lqs users add`, POST
-- /auth/login). A user is a profile (their id is the token's sub); their credentials
-- live beside it, here. Only the service reads or writes this table: no user, not even
-- about themselves, may read a hash, so authenticated and anon get no privilege and
-- no policy names them.

-- ---------------------------------------------------------------- profiles: one email each
-- A user signs in by email, so an address names one profile at most, whatever its case.
CREATE UNIQUE INDEX idx_profiles_email_lower ON public.profiles (lower(email))
    WHERE email IS NOT NULL;

-- ---------------------------------------------------------------- user_credentials
CREATE TABLE public.user_credentials (
    user_id uuid PRIMARY KEY REFERENCES public.profiles(id) ON DELETE CASCADE,
    -- argon2id, in PHC form ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    disabled_at timestamptz,
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.user_credentials IS
    'Password hashes and sign-in state for LQS''s own sign-in; read by the service role only';
COMMENT ON COLUMN public.user_credentials.failed_attempts IS
    'Failed sign-ins since the last success; the fifth locks the user out for 15 minutes';

CREATE TRIGGER trigger_user_credentials_updated_at
    BEFORE UPDATE ON public.user_credentials
    FOR EACH ROW EXECUTE FUNCTION public.lqs_set_updated_at();

-- ---------------------------------------------------------------- privileges and RLS
REVOKE ALL ON TABLE public.user_credentials FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.user_credentials TO service_role;

ALTER TABLE public.user_credentials ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Service role can manage all user credentials" ON public.user_credentials
    FOR ALL TO service_role
    USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
