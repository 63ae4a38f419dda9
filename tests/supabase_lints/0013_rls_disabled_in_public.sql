-- LQS's implementation of Supabase advisor lint 0013 rls_disabled_in_public (same check, our SQL)
-- A table in an API schema that anon or authenticated may select from (any column) and whose
-- row-level security is off serves every row to the Data API. Partitioned tables count too.
SELECT
    'rls_disabled_in_public' AS name,
    'RLS Disabled in Public' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Tables in schemas the Data API exposes whose row level security is not enabled.'
        AS description,
    format(
        'Table `%s.%s` is readable through the API and row level security is not enabled on it.',
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0013_rls_disabled_in_public'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'table') AS metadata,
    format('rls_disabled_in_public_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relrowsecurity
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
ORDER BY n.nspname, c.relname
