-- LQS's implementation of Supabase advisor lint 0009 duplicate_index (same check, our SQL)
-- Two indexes on one table or materialized view are duplicates when everything but their
-- names is the same: access method, uniqueness, key and included columns, expressions,
-- operator classes, collations, sort options and predicate. A primary key's index counts as
-- a unique index. Reported: one row per set of duplicates.
WITH index_shape AS (
    SELECT n.nspname AS schema_name, t.relname AS table_name, t.relkind, x.relname AS index_name,
        jsonb_build_array(
            i.indrelid,
            x.relam,
            i.indisunique,
            i.indnkeyatts,
            i.indkey::text,
            i.indclass::text,
            i.indcollation::text,
            i.indoption::text,
            pg_catalog.pg_get_expr(i.indexprs, i.indrelid),
            pg_catalog.pg_get_expr(i.indpred, i.indrelid),
            -- NULLS NOT DISTINCT exists from PostgreSQL 15 on; older servers give null.
            pg_catalog.to_jsonb(i) -> 'indnullsnotdistinct'
        ) AS shape
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid
    JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
    WHERE t.relkind IN ('r', 'm')
      AND n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
          storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
      AND NOT EXISTS (
          SELECT FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.objid = t.oid AND d.deptype = 'e'
      )
)
SELECT
    'duplicate_index' AS name,
    'Duplicate Index' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['PERFORMANCE'] AS categories,
    'Identical indexes on one table: every write maintains each of them, and only one is ever '
        'needed.' AS description,
    format(
        'Table `%s.%s` has identical indexes %s; keep one and drop the others',
        schema_name, table_name, string_agg(format('`%s`', index_name), ', ' ORDER BY index_name)
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0009_duplicate_index'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', CASE relkind WHEN 'm' THEN 'materialized view' ELSE 'table' END,
        'indexes', array_agg(index_name ORDER BY index_name)
    ) AS metadata,
    format(
        'duplicate_index_%s_%s_%s',
        schema_name, table_name, array_agg(index_name ORDER BY index_name)
    ) AS cache_key
FROM index_shape
GROUP BY schema_name, table_name, relkind, shape
HAVING count(*) > 1
ORDER BY schema_name, table_name, min(index_name)
