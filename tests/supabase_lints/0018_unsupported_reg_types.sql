-- LQS's implementation of Supabase advisor lint 0018 unsupported_reg_types (same check, our SQL)
-- Stored values of most reg* types are object OIDs that pg_upgrade cannot carry over, so it
-- refuses to upgrade a database with such columns (regclass, regtype and regrole are the
-- exceptions). Reported: columns of tables and materialized views whose type is one of those
-- reg* types, an array of one, or a domain over one.
WITH blocking_type AS (
    SELECT t.oid, t.typname
    FROM pg_catalog.pg_type t
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
    WHERE tn.nspname = 'pg_catalog'
      AND t.typname IN (
          'regcollation', 'regconfig', 'regdictionary', 'regnamespace',
          'regoper', 'regoperator', 'regproc', 'regprocedure'
      )
)
SELECT
    'unsupported_reg_types' AS name,
    'Unsupported reg types' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Columns of reg* types that pg_upgrade cannot carry over, which blocks upgrading the '
        'database.' AS description,
    format(
        'Table `%s.%s` has a column `%s` of type `%s`, which blocks pg_upgrade.',
        n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=unsupported_reg_types'
        AS remediation,
    jsonb_build_object(
        'schema', n.nspname,
        'name', c.relname,
        'column', a.attname,
        'type', 'table'
    ) AS metadata,
    format('unsupported_reg_types_%s_%s_%s', n.nspname, c.relname, a.attname) AS cache_key
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type ct ON ct.oid = a.atttypid
WHERE c.relkind IN ('r', 'm')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND EXISTS (
      SELECT FROM blocking_type b WHERE b.oid IN (ct.oid, ct.typelem, ct.typbasetype)
  )
  AND n.nspname !~ '^pg_'
  AND n.nspname NOT IN ('information_schema', 'pgsodium')
ORDER BY n.nspname, c.relname, a.attnum
