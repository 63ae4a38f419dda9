-- LQS's implementation of Supabase advisor lint 0017 foreign_table_in_api (same check, our SQL)
-- Foreign tables have no row-level security: one in an API schema that anon or authenticated
-- may select from serves whatever the remote side returns to the Data API.
SELECT
    'foreign_table_in_api' AS name,
    'Foreign Table in API' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Foreign tables the Data API can read; they have no row level security.' AS description,
    format(
        'Foreign table `%s.%s` can be selected from by anon or authenticated through the API',
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0017_foreign_table_in_api'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'foreign table')
        AS metadata,
    format('foreign_table_in_api_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'f'
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
