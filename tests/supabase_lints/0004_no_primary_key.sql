-- LQS's implementation of Supabase advisor lint 0004 no_primary_key (same check, our SQL)
-- Ordinary tables without a primary key (outside the platform's schemas and extensions).
SELECT
    'no_primary_key' AS name,
    'No Primary Key' AS title,
    'INFO' AS level,
    'EXTERNAL' AS facing,
    ARRAY['PERFORMANCE'] AS categories,
    'Tables without a primary key: rows cannot be addressed one by one, which makes updates, '
        'replication and tooling slow or impossible at scale.' AS description,
    format('Table `%s.%s` has no primary key', n.nspname, c.relname) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0004_no_primary_key'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'type', 'table') AS metadata,
    format('no_primary_key_%s_%s', n.nspname, c.relname) AS cache_key
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'
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
