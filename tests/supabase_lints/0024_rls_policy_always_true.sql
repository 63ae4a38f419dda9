-- LQS's implementation of Supabase advisor lint 0024 rls_policy_always_true (same check, our SQL)
-- A permissive policy for writes whose condition is always true (`true`, `1 = 1`) lets its
-- roles change every row, while row-level security looks enabled. Asked: permissive policies
-- on tables with row-level security on that apply to PUBLIC, anon or authenticated.
-- Reported when the USING of an UPDATE, DELETE or ALL policy is always true, or when the
-- check on written rows is: an always-true WITH CHECK, or none on an UPDATE or ALL policy
-- whose USING (then the check) is always true. As the advisor does, a missing USING (UPDATE,
-- DELETE, ALL) or WITH CHECK (INSERT) counts as unrestricted too, although PostgreSQL lets
-- such a policy admit no row. SELECT policies are left alone: `USING (true)` for reads is a
-- common, deliberate choice.
WITH policy AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, p.polname AS policy_name,
        CASE p.polcmd
            WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
            WHEN 'd' THEN 'DELETE' ELSE 'ALL'
        END AS command,
        ARRAY(
            SELECT CASE WHEN r = 0 THEN 'public' ELSE r::pg_catalog.regrole::text END
            FROM unnest(p.polroles) AS r ORDER BY 1
        ) AS roles,
        pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
        pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE p.polpermissive
      AND c.relkind = 'r'
      AND c.relrowsecurity
      AND n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
          storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
),
judged AS (
    SELECT policy.*,
        -- The deparsed condition without blanks and outer parentheses: `true` or `1=1`.
        btrim(regexp_replace(lower(using_expr), '\s', '', 'g'), '()') IN ('true', '1=1')
            AS using_true,
        btrim(regexp_replace(lower(check_expr), '\s', '', 'g'), '()') IN ('true', '1=1')
            AS check_true
    FROM policy
    WHERE roles && ARRAY['public', 'anon', 'authenticated']
),
flagged AS (
    SELECT judged.*,
        command IN ('UPDATE', 'DELETE', 'ALL') AND coalesce(using_true, true) AS open_using,
        coalesce(check_true, false)
            OR (check_expr IS NULL AND command = 'INSERT')
            OR (check_expr IS NULL AND command IN ('UPDATE', 'ALL') AND coalesce(using_true, false))
            AS open_check
    FROM judged
)
SELECT
    'rls_policy_always_true' AS name,
    'RLS Policy Always True' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Row level security policies for INSERT, UPDATE or DELETE whose condition is always true '
        '(`USING (true)`, `WITH CHECK (true)`), so they restrict nothing. `USING (true)` on '
        'SELECT policies is not reported: public reads are often intended.' AS description,
    format(
        'Table `%s.%s` has a row level security policy `%s` for `%s` whose %s always true, so it '
            'lets %s change any row.',
        schema_name, table_name, policy_name, command,
        CASE
            WHEN open_using AND open_check THEN 'USING and WITH CHECK are'
            WHEN open_using THEN 'USING is'
            ELSE 'WITH CHECK is'
        END,
        array_to_string(roles, ', ')
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0024_permissive_rls_policy'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', 'table',
        'policy_name', policy_name,
        'command', command,
        'roles', roles,
        'qual', using_expr,
        'with_check', check_expr,
        'permissive_using', open_using,
        'permissive_with_check', open_check
    ) AS metadata,
    format('rls_policy_always_true_%s_%s_%s', schema_name, table_name, policy_name) AS cache_key
FROM flagged
WHERE open_using OR open_check
ORDER BY schema_name, table_name, policy_name
