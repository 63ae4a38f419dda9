-- LQS's implementation of Supabase advisor lint 0011 function_search_path_mutable (same check, our SQL)
-- A function without its own `SET search_path` resolves unqualified names through the
-- caller's search_path, which the caller controls. Reported: functions and procedures
-- outside the platform's schemas and extensions with no search_path in their settings
-- (aggregates take no settings and are not asked).
SELECT
    'function_search_path_mutable' AS name,
    'Function Search Path Mutable' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Functions that do not set their own search_path, so the calling role decides how their '
        'unqualified names resolve.' AS description,
    format(
        'Function `%s.%s` sets no search_path, so the role calling it decides what its '
            'unqualified names resolve to',
        n.nspname, p.proname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0011_function_search_path_mutable'
        AS remediation,
    jsonb_build_object(
        'schema', n.nspname,
        'name', p.proname,
        'type', 'function',
        'arguments', pg_catalog.pg_get_function_identity_arguments(p.oid)
    ) AS metadata,
    format(
        'function_search_path_mutable_%s_%s_%s',
        n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
    ) AS cache_key
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind <> 'a'
  AND NOT EXISTS (
      SELECT FROM unnest(p.proconfig) AS setting WHERE setting LIKE 'search\_path=%'
  )
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND d.objid = p.oid AND d.deptype = 'e'
  )
ORDER BY n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
