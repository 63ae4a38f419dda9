-- LQS's implementation of Supabase advisor lint 0023 sensitive_columns_exposed (same check, our SQL)
-- A table in an API schema that anon or authenticated may select from, with row-level
-- security off, and with a column whose name says it holds a credential, an identity
-- document, payment, health, device or biometric data. Names are compared case-insensitively,
-- with `-` read as `_`.
WITH sensitive_name (category, column_name) AS (
    SELECT 'credentials', unnest('{access_token, activation_key, api_key, apikey, auth_code,
        auth_key, backup_code, bearer_token, certificate, gpg_key, jwt, license_key, oauth_token,
        otp, passphrase, passwd, password, pgp_key, private_key, pwd, recovery_code,
        refresh_token, secret, secret_key, session_id, session_key, session_secret,
        session_token, ssh_key, token, two_factor, verification_code, 2fa_code,
        2fa_secret}'::text[])
    UNION ALL
    SELECT 'identity documents', unnest('{driver_license, drivers_license, license_number,
        national_id, passport_id, passport_number, social_security, social_security_number, ssn,
        tax_id}'::text[])
    UNION ALL
    SELECT 'financial', unnest('{account_number, bank_account, bic, card_number, credit_card,
        cvc, cvn, cvv, iban, routing_number, swift_code}'::text[])
    UNION ALL
    SELECT 'health', unnest('{health_insurance, health_record, insurance_number,
        medical_insurance, medical_record, patient_id, treatment}'::text[])
    UNION ALL
    SELECT 'devices', unnest('{device_uuid, imei, mac_address, macaddr}'::text[])
    UNION ALL
    SELECT 'biometrics', unnest('{facial_recognition}'::text[])
),
exposed_column AS (
    SELECT n.nspname AS schema_name, c.relname AS table_name, a.attname AS column_name,
        s.column_name AS matched
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN sensitive_name s ON s.column_name = replace(lower(a.attname), '-', '_')
    WHERE c.relkind IN ('r', 'p')
      AND NOT c.relrowsecurity
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
)
SELECT
    'sensitive_columns_exposed' AS name,
    'Sensitive Columns Exposed' AS title,
    'ERROR' AS level,
    'EXTERNAL' AS facing,
    ARRAY['SECURITY'] AS categories,
    'Tables readable through the Data API without row level security that have columns named '
        'for sensitive data (credentials, identity documents, payment or health data).'
        AS description,
    format(
        'Table `%s.%s` is readable through the API without row level security and has columns '
            'that look sensitive: %s.',
        schema_name, table_name, string_agg(column_name, ', ' ORDER BY column_name)
    ) AS detail,
    'https://supabase.com/docs/guides/database/database-linter?lint=0023_sensitive_columns_exposed'
        AS remediation,
    jsonb_build_object(
        'schema', schema_name,
        'name', table_name,
        'type', 'table',
        'sensitive_columns', array_agg(column_name ORDER BY column_name),
        'matched_patterns', array_agg(DISTINCT matched ORDER BY matched)
    ) AS metadata,
    format('sensitive_columns_exposed_%s_%s', schema_name, table_name) AS cache_key
FROM exposed_column
GROUP BY schema_name, table_name
ORDER BY schema_name, table_name
