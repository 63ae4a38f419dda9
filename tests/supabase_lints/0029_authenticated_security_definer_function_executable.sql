-- LQS's implementation of Supabase advisor lint 0029 authenticated_security_definer_function_executable (same check, our SQL)
-- A SECURITY DEFINER function runs with its owner's privileges, past row-level security.
-- One in an API schema that authenticated may execute can be called by every signed-in
-- user (with open sign-up, anyone), through PostgREST's /rest/v1/rpc/<name> (and GraphQL,
-- where pg_graphql exposes it). Reported whether or not pg_graphql is installed: PostgREST alone exposes it.
SELECT
    'authenticated_security_definer_function_executable' AS name,
    'Signed-In Users Can Execute SECURITY DEFINER Function' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'SECURITY DEFINER functions in API schemas that every signed-in user can call, through '
        'the authenticated role.' AS description,
    format(
        'Function `%s.%s(%s)` runs as its owner (SECURITY DEFINER) and `authenticated` may '
            'execute it, so every signed-in user can call it through `/rest/v1/rpc/%s`.',
        n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), p.proname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0029_authenticated_security_definer_function_executable'
        AS remediation,
    jsonb_build_object(
        'schema', n.nspname,
        'name', p.proname,
        'arguments', pg_catalog.pg_get_function_identity_arguments(p.oid),
        'language', l.lanname,
        'security_definer', true
    ) AS metadata,
    format(
        'authenticated_security_definer_function_executable_%s_%s_%s',
        n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
    ) AS cache_key
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.prosecdef
  AND pg_catalog.has_function_privilege('authenticated', p.oid, 'EXECUTE')
  AND n.nspname = ANY (
      string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
ORDER BY n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
