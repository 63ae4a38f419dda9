-- LQS's implementation of Supabase advisor lint 0001 unindexed_foreign_keys (same check, our SQL)
-- A foreign key is covered when a valid index on the referencing table has the key's columns,
-- in the key's order, as its leading key columns. Without one, every delete or key update on
-- the referenced table scans the referencing table.
WITH foreign_key AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, c.oid AS table_oid,
           k.conname AS key_name, k.conkey AS key_columns
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE k.contype = 'f'
      AND n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
          storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
      AND NOT EXISTS (
          SELECT FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.objid = c.oid AND d.deptype = 'e'
      )
)
SELECT
    'unindexed_foreign_keys' AS name,
    'Unindexed foreign keys' AS title,
    'INFO' AS level,
    'EXTERNAL' AS facing,
    ARRAY['PERFORMANCE'] AS categories,
    'Foreign keys that no index leads with: checking them on the referenced side, and joining '
        'along them, reads the whole referencing table.' AS description,
    format(
        'Table `%s.%s` has a foreign key `%s` that no index covers; queries along it and '
            'changes to the rows it references scan the table.',
        fk.schema_name, fk.table_name, fk.key_name
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0001_unindexed_foreign_keys'
        AS remediation,
    jsonb_build_object(
        'schema', fk.schema_name,
        'name', fk.table_name,
        'type', 'table',
        'fkey_name', fk.key_name,
        'fkey_columns', fk.key_columns
    ) AS metadata,
    format('unindexed_foreign_keys_%s_%s_%s', fk.schema_name, fk.table_name, fk.key_name)
        AS cache_key
FROM foreign_key fk
WHERE NOT EXISTS (
    SELECT FROM pg_catalog.pg_index i
    WHERE i.indrelid = fk.table_oid
      AND i.indisvalid
      AND cardinality(fk.key_columns) <= i.indnkeyatts
      -- indkey is zero-based; the slice comes back one-based, as conkey is.
      AND (i.indkey::pg_catalog.int2[])[0:cardinality(fk.key_columns) - 1] = fk.key_columns
)
ORDER BY fk.schema_name, fk.table_name, fk.key_name
