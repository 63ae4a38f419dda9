-- LQS's implementation of Supabase advisor lint 0015 rls_references_user_metadata (same check, our SQL)
-- Supabase Auth's user_metadata claim is written by the users themselves, so a policy that
-- decides access from it lets users grant themselves access. Reported: policies whose USING
-- or WITH CHECK reads user_metadata out of the JWT (auth.jwt(), or the request.jwt.claims
-- setting).
WITH policy AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, p.polname AS policy_name,
        pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
        pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
          storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
)
SELECT
    'rls_references_user_metadata' AS name,
    'RLS references user metadata' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Row level security policies that decide access from Supabase Auth `user_metadata`, which '
        'users can edit themselves.' AS description,
    format(
        'Table `%s.%s` has a row level security policy `%s` that reads Supabase Auth '
            '`user_metadata`; users edit their own `user_metadata`, so it must not decide access.',
        schema_name, table_name, policy_name
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0015_rls_references_user_metadata'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', 'table',
        'policy_name', policy_name
    ) AS metadata,
    format('rls_references_user_metadata_%s_%s_%s', schema_name, table_name, policy_name)
        AS cache_key
FROM policy
WHERE using_expr ~ '(auth\.jwt\(\)|current_setting\([^)]*request\.jwt\.claims).*user_metadata'
   OR check_expr ~ '(auth\.jwt\(\)|current_setting\([^)]*request\.jwt\.claims).*user_metadata'
ORDER BY schema_name, table_name, policy_name
