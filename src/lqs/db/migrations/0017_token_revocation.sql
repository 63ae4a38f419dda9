-- Sessions end when their user is disabled or their password changes.
--
-- An access token is checked for its signature and expiry only; for a user who signs in
-- with LQS's own credentials (a user_credentials row), the service also asks, once per
-- request as that user, whether the token is still current: the user is not disabled,
-- and the token was issued no earlier than the second of the last password change
-- (a token's iat is whole seconds). user_credentials is read by the service role only,
-- so the answer comes from this narrow SECURITY DEFINER function: it reads nothing but
-- the caller's own row (auth.uid()), and answers one boolean. Users of Supabase Auth
-- have no credentials row: their sessions are Supabase's to end, and the answer is true.
--
-- Supabase's advisor (lint 0029) reports every SECURITY DEFINER function signed-in users
-- may execute: this one is accepted (tests/integration/test_supabase_lints.py), as all it
-- tells a user, through /rest/v1/rpc as well, is whether their own token is current.

CREATE FUNCTION public.lqs_session_is_current(issued_at timestamptz)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM public.user_credentials u
        WHERE u.user_id = (SELECT auth.uid())
          AND (u.disabled_at IS NOT NULL
               OR issued_at IS NULL
               OR issued_at < date_trunc('second', u.password_changed_at))
    )
$$;

COMMENT ON FUNCTION public.lqs_session_is_current(timestamptz) IS
    'Whether the signed-in user''s token issued at issued_at is still current: false once '
    'they are disabled or their password changed after it; true without LQS credentials';

-- Supabase grants EXECUTE on new functions to anon, authenticated and service_role, and
-- PostgreSQL to PUBLIC: take all of it back, then let signed-in users ask about themselves.
REVOKE ALL ON FUNCTION public.lqs_session_is_current(timestamptz)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.lqs_session_is_current(timestamptz) TO authenticated;
