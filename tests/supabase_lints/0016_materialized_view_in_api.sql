-- LQS's implementation of Supabase advisor lint 0016 materialized_view_in_api (same check, our SQL)
-- Materialized views have no row-level security: one in an API schema that anon or
-- authenticated may select from serves all of its rows to the Data API.
SELECT
    'materialized_view_in_api' AS name,
    'Materialized View in API' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Materialized views the Data API can read; they have no row level security.' AS description,
    format(
        'Materialized view `%s.%s` can be selected from by anon or authenticated through the API',
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0016_materialized_view_in_api'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'materialized view')
        AS metadata,
    format('materialized_view_in_api_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm'
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
