-- LQS's implementation of Supabase advisor lint 0021 fkey_to_auth_unique (same check, our SQL)
-- The auth service owns the unique constraints in its schema and may drop or change them in
-- an upgrade; a user's foreign key to one of them (rather than to a primary key) then blocks
-- the upgrade. Reported: foreign keys from tables outside the platform's schemas whose
-- referenced index is a unique, non-primary-key index on a table in the auth schema.
SELECT
    'fkey_to_auth_unique' AS name,
    'Foreign Key to Auth Unique Constraint' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Foreign keys from application tables to unique constraints (other than primary keys) in '
        'the auth schema.' AS description,
    format(
        'Table `%s.%s` has a foreign key `%s` to a unique constraint of `auth.%s`, which the '
            'auth service may change',
        n.nspname, c.relname, k.conname, ref.relname
    ) AS detail,
    'Drop the foreign key, or point it at the primary key of the auth table.' AS remediation,
    jsonb_build_object('schema', n.nspname, 'name', c.relname, 'foreign_key', k.conname)
        AS metadata,
    format('fkey_to_auth_unique_%s_%s_%s', n.nspname, c.relname, k.conname) AS cache_key
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class ref ON ref.oid = k.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = ref.relnamespace
JOIN pg_catalog.pg_index i ON i.indexrelid = k.conindid
WHERE k.contype = 'f'
  AND rn.nspname = 'auth'
  AND i.indisunique
  AND NOT i.indisprimary
  AND n.nspname !~ '^(pg_|_timescaledb_)'
  AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
      net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
      storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
ORDER BY n.nspname, c.relname, k.conname
