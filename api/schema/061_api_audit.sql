-- Append-only audit log (api/audit.py): every certifier token use, every export, every refused request.
-- A trigger refuses UPDATE, DELETE and TRUNCATE, so rows can only be added.
CREATE TABLE IF NOT EXISTS api_audit (
    id        bigserial   PRIMARY KEY,
    ts        timestamptz NOT NULL DEFAULT now(),
    event     text        NOT NULL CHECK (event IN ('certifier_use', 'export', 'refused')),
    token_id  bigint,
    role      text,
    method    text        NOT NULL DEFAULT '',
    path      text        NOT NULL DEFAULT '',
    query     text        NOT NULL DEFAULT '',
    status    int,
    detail    text        NOT NULL DEFAULT '',
    client    text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_audit_ts_idx ON api_audit (ts);

CREATE OR REPLACE FUNCTION api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS api_audit_no_change ON api_audit;
CREATE TRIGGER api_audit_no_change BEFORE UPDATE OR DELETE ON api_audit
    FOR EACH ROW EXECUTE FUNCTION api_audit_append_only();
DROP TRIGGER IF EXISTS api_audit_no_truncate ON api_audit;
CREATE TRIGGER api_audit_no_truncate BEFORE TRUNCATE ON api_audit
    FOR EACH STATEMENT EXECUTE FUNCTION api_audit_append_only();
