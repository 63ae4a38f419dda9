-- LQS's implementation of Supabase advisor lint 0003 auth_rls_initplan (same check, our SQL)
-- A policy that calls auth.uid(), auth.jwt(), auth.role(), auth.email() or current_setting()
-- directly has the call evaluated for every row; wrapped as `(SELECT auth.uid())` it becomes
-- an init plan, evaluated once per statement. Reported: policies on tables with row-level
-- security on whose USING or WITH CHECK has such a call not directly inside a SELECT.
-- The realtime schema is inspected (its messages table carries users' policies).
WITH policy AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, p.polname AS policy_name,
        pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
        pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relrowsecurity
      AND n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, repack, storage,
          supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
)
SELECT
    'auth_rls_initplan' AS name,
    'Auth RLS Initialization Plan' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['PERFORMANCE'] AS categories,
    'Row-level security policies that call `auth.<function>()` or `current_setting()` once per '
        'row instead of once per statement.' AS description,
    format(
        'Table `%s.%s` has a row level security policy `%s` that calls current_setting() or '
            'auth.<function>() for every row it checks. Write the call as '
            '`(select auth.<function>())` so it is evaluated once per statement.',
        schema_name, table_name, policy_name
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0003_auth_rls_initplan'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', 'table',
        'policy_name', policy_name
    ) AS metadata,
    format('auth_rls_init_plan_%s_%s_%s', schema_name, table_name, policy_name) AS cache_key
FROM policy
-- A call counts as wrapped when the deparsed text has `SELECT ` right before it.
WHERE using_expr ~* '(?<!select )\m(auth\.(uid|jwt|role|email)\(\)|current_setting\()'
   OR check_expr ~* '(?<!select )\m(auth\.(uid|jwt|role|email)\(\)|current_setting\()'
ORDER BY schema_name, table_name, policy_name
