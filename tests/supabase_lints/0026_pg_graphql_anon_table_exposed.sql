-- LQS's implementation of Supabase advisor lint 0026 pg_graphql_anon_table_exposed (same check, our SQL)
-- pg_graphql's introspection shows a role every table, view, materialized view and foreign
-- table of which it may select at least one column, row-level security or not. Reported:
-- such relations for anon, whose key is public. Supabase installs pg_graphql in every
-- project; plain PostgreSQL has no such extension, so this implementation reports what the
-- GraphQL schema would show instead of first asking whether pg_graphql is installed.
SELECT
    'pg_graphql_anon_table_exposed' AS name,
    'Public Can See Object in GraphQL Schema' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Tables, views, materialized views and foreign tables that anyone holding the public anon '
        'key sees in the GraphQL schema, because `anon` can select from them.' AS description,
    format(
        '%s `%s.%s` appears in the GraphQL schema of anyone with the anon key, because `anon` '
            'can `SELECT` from it. Revoke that if it should stay hidden before sign-in.',
        CASE c.relkind
            WHEN 'r' THEN 'Table' WHEN 'v' THEN 'View'
            WHEN 'm' THEN 'Materialized view' ELSE 'Foreign table'
        END,
        n.nspname, c.relname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0026_pg_graphql_anon_table_exposed'
        AS remediation,
    jsonb_build_object(
        'schema', n.nspname,
        'name', c.relname,
        'type', CASE c.relkind
            WHEN 'r' THEN 'table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' ELSE 'foreign table'
        END
    ) AS metadata,
    format('pg_graphql_anon_table_exposed_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
-- pg_graphql leaves out partitioned parents ('p'); their partitions are ordinary tables.
WHERE c.relkind IN ('r', 'v', 'm', 'f')
  AND pg_catalog.has_any_column_privilege('anon', c.oid, 'SELECT')
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
ORDER BY n.nspname, c.relname
