-- LQS's implementation of Supabase advisor lint 0010 security_definer_view (same check, our SQL)
-- A view reads its tables with its owner's privileges and row-level security unless it is
-- created WITH (security_invoker) (PostgreSQL 15 and later). Reported: views in API schemas
-- that anon or authenticated can select from and that are not security-invoker views.
SELECT
    'security_definer_view' AS name,
    'Security Definer View' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Views that run with their owner''s privileges and row level security policies (SECURITY '
        'DEFINER, the default) instead of the querying role''s.' AS description,
    format(
        'View `%s.%s` runs as its owner (SECURITY DEFINER), so API roles read through it with '
            'the owner''s privileges and policies',
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0010_security_definer_view'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'view') AS metadata,
    format('security_definer_view_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v'
  AND pg_catalog.current_setting('server_version_num')::int >= 150000
  AND NOT coalesce((
      SELECT o.option_value::boolean
      FROM pg_catalog.pg_options_to_table(c.reloptions) o
      WHERE o.option_name = 'security_invoker'
  ), false)
  AND (
      pg_catalog.has_any_column_privilege('anon', c.oid, 'SELECT')
      OR pg_catalog.has_any_column_privilege('authenticated', c.oid, 'SELECT')
  )
  AND n.nspname = ANY (
      string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
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
