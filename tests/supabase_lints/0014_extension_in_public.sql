-- LQS's implementation of Supabase advisor lint 0014 extension_in_public (same check, our SQL)
-- Extensions whose objects live in the public schema, where the API roles can see them and
-- where they shadow or are shadowed by the application's own names. plpgsql, which every
-- database has there, is not reported.
SELECT
    'extension_in_public' AS name,
    'Extension in Public' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Extensions installed in the `public` schema.' AS description,
    format(
        'Extension `%s` is installed in the public schema; install it in a schema of its own '
            '(such as `extensions`).',
        e.extname
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0014_extension_in_public'
        AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', e.extname, 'type', 'extension') AS metadata,
    format('extension_in_public_%s', e.extname) AS cache_key
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = 'public'
  AND e.extname <> 'plpgsql'
ORDER BY e.extname
