-- One name per thing: a template is known by its name.
--
-- In public.templates the column template_id held a template's bare name
-- (`lead_qualified`), while communications.template_id, the seed's column, which stays,
-- holds the exact template a message used (`lead_qualified@v3`). The templates column
-- becomes `name`; its CHECK and its UNIQUE constraint (with the index behind it) are
-- renamed after it. The table's policies and grants name no column: untouched.

ALTER TABLE public.templates RENAME COLUMN template_id TO name;

ALTER TABLE public.templates
    RENAME CONSTRAINT templates_template_id_check TO templates_name_check;

ALTER TABLE public.templates
    RENAME CONSTRAINT templates_client_id_template_id_version_key
    TO templates_client_id_name_version_key;

COMMENT ON TABLE public.templates IS
    'Versioned per-client message templates; the highest version of a name is in use';
