-- LQS's implementation of Supabase advisor lint 0007 policy_exists_rls_disabled (same check, our SQL)
-- Policies do nothing until row-level security is enabled on their table: reported are
-- ordinary tables that have policies while their row-level security is off.
SELECT
    'policy_exists_rls_disabled' AS name,
    'Policy Exists RLS Disabled' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Tables with row level security policies whose row level security is not enabled, so the '
        'policies are never applied.' AS description,
    format(
        'Table `%s.%s` has policies (%s) but row level security is not enabled on it, so none '
            'of them applies.',
        n.nspname, c.relname, string_agg(format('`%s`', p.polname), ', ' ORDER BY p.polname)
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0007_policy_exists_rls_disabled'
        AS remediation,
    jsonb_build_object(
        'schema', n.nspname,
        'name', c.relname,
        'type', 'table',
        'policies', array_agg(p.polname ORDER BY p.polname)
    ) AS metadata,
    format('policy_exists_rls_disabled_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_policy p ON p.polrelid = c.oid
WHERE c.relkind = 'r'
  AND NOT c.relrowsecurity
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.objid = c.oid AND d.deptype = 'e'
  )
GROUP BY n.nspname, c.relname
ORDER BY n.nspname, c.relname
