-- LQS's implementation of Supabase advisor lint 0002 auth_users_exposed (same check, our SQL)
-- A view or materialized view in an API schema that reads auth.users and that anon or
-- authenticated may select from hands the auth service's user rows to the Data API. The one
-- safe shape is a security-invoker view over an auth.users that has row-level security on.
WITH auth_users AS (
    SELECT c.oid, c.relrowsecurity AS rls_on
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'auth' AND c.relname = 'users'
),
reader AS (
    -- Views and materialized views are rewrite rules; the rule depends on what it reads.
    SELECT DISTINCT v.oid, n.nspname AS schema_name, v.relname AS view_name, v.relkind,
        coalesce((
            SELECT o.option_value::boolean
            FROM pg_catalog.pg_options_to_table(v.reloptions) o
            WHERE o.option_name = 'security_invoker'
        ), false) AS security_invoker,
        u.rls_on AS users_rls_on
    FROM auth_users u
    JOIN pg_catalog.pg_depend d
        ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid = u.oid
       AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
       AND d.deptype = 'n'
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
    JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
    WHERE v.relkind IN ('v', 'm')
      AND n.nspname = ANY (
          string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
      )
),
exposed AS (
    SELECT reader.*,
        array_remove(ARRAY[
            CASE WHEN pg_catalog.has_any_column_privilege('anon', reader.oid, 'SELECT')
                THEN 'anon' END,
            CASE WHEN pg_catalog.has_any_column_privilege('authenticated', reader.oid, 'SELECT')
                THEN 'authenticated' END
        ], NULL) AS readers
    FROM reader
)
SELECT
    'auth_users_exposed' AS name,
    'Exposed Auth Users' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Views and materialized views in API schemas that read auth.users and that anon or '
        'authenticated can select from: the users'' rows reach the Data API.' AS description,
    format(
        '%s `%s.%s` reads `auth.users` and %s can select from it through the API.',
        CASE relkind WHEN 'm' THEN 'Materialized view' ELSE 'View' END,
        schema_name, view_name, array_to_string(readers, ' and ')
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0002_auth_users_exposed'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', view_name,
        'type', CASE relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
        'exposed_to', readers
    ) AS metadata,
    format('auth_users_exposed_%s_%s', schema_name, view_name) AS cache_key
FROM exposed
WHERE cardinality(readers) > 0
  -- A materialized view has no row-level security; a definer view reads as its owner.
  AND (relkind = 'm' OR NOT security_invoker OR NOT users_rls_on)
ORDER BY schema_name, view_name
