-- LQS's implementation of Supabase advisor lint 0006 multiple_permissive_policies (same check, our SQL)
-- Permissive policies are OR-ed: every one that applies to a role and a command runs for each
-- row. Reported: one row per table, role and command with more than one permissive policy.
-- A policy without TO applies to every role; FOR ALL applies to all four commands. Roles that
-- bypass row-level security, PostgreSQL's pg_* roles and Supabase's admin roles are not asked.
WITH policy_command AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, p.polname AS policy_name,
        p.polroles, command
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL unnest(CASE p.polcmd
        WHEN 'r' THEN ARRAY['SELECT']
        WHEN 'a' THEN ARRAY['INSERT']
        WHEN 'w' THEN ARRAY['UPDATE']
        WHEN 'd' THEN ARRAY['DELETE']
        ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']
    END) AS command
    WHERE p.polpermissive
      AND c.relkind = 'r'
      AND n.nspname !~ '^(pg_|_timescaledb_)'
      AND n.nspname <> ALL ('{auth, cron, extensions, graphql, graphql_public, information_schema,
          net, pgbouncer, pgmq, pgroonga, pgsodium, pgsodium_masks, pgtle, realtime, repack,
          storage, supabase_functions, supabase_migrations, tiger, topology, vault}'::name[])
      AND NOT EXISTS (
          SELECT FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.objid = c.oid AND d.deptype = 'e'
      )
),
role_command AS (
    SELECT pc.schema_name, pc.table_name, pc.policy_name, pc.command, r.rolname AS role_name
    FROM policy_command pc
    -- Role 0 is PUBLIC: the policy names no role.
    JOIN pg_catalog.pg_roles r ON r.oid = ANY (pc.polroles) OR 0 = ANY (pc.polroles)
    WHERE NOT r.rolbypassrls
      AND r.rolname NOT LIKE 'pg\_%'
      AND r.rolname NOT LIKE 'supabase%admin'
)
SELECT
    'multiple_permissive_policies' AS name,
    'Multiple Permissive Policies' AS title,
    'WARN' AS level,
    'EXTERNAL' AS facing,
    ARRAY['PERFORMANCE'] AS categories,
    'Tables with more than one permissive row level security policy for the same `role` and '
        '`action`: each of them is evaluated for every row the query touches.' AS description,
    format(
        'Table `%s.%s` has %s permissive policies for role `%s` and action `%s`, each evaluated '
            'for every row: %s',
        schema_name, table_name, count(*), role_name, command,
        string_agg(format('`%s`', policy_name), ', ' ORDER BY policy_name)
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0006_multiple_permissive_policies'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', 'table',
        'role', role_name,
        'action', command,
        'policies', array_agg(policy_name ORDER BY policy_name)
    ) AS metadata,
    format(
        'multiple_permissive_policies_%s_%s_%s_%s', schema_name, table_name, role_name, command
    ) AS cache_key
FROM role_command
GROUP BY schema_name, table_name, role_name, command
HAVING count(*) > 1
ORDER BY schema_name, table_name, role_name, command
