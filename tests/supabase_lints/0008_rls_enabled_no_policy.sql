-- LQS's implementation of Supabase advisor lint 0008 rls_enabled_no_policy (same check, our SQL)
-- Row-level security on and not a single policy: every role that does not bypass row-level
-- security sees no row. Reported so that the intent (deny all) is stated with a policy.
SELECT
    'rls_enabled_no_policy' AS name,
    'RLS Enabled No Policy' AS title,
    'INFO' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Tables whose row level security is enabled but that have no row level security policy.'
        AS description,
    format(
        'Table `%s.%s` has row level security enabled and no policy, so it denies every row '
            'to every role that does not bypass row level security',
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0008_rls_enabled_no_policy'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'table') AS metadata,
    format('rls_enabled_no_policy_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relrowsecurity
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.objid = c.oid AND d.deptype = 'e'
  )
ORDER BY n.nspname, c.relname
