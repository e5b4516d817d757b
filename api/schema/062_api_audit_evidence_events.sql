-- Evidence packs get their own audit events (api/routes/evidence.py): a request, a view and a download of a
-- pack are told apart by event rather than by the detail text. Rows written before this migration keep
-- event 'export' (the table is append-only; its triggers are unchanged).
ALTER TABLE api_audit DROP CONSTRAINT IF EXISTS api_audit_event_check;
ALTER TABLE api_audit ADD CONSTRAINT api_audit_event_check CHECK (event IN (
    'certifier_use', 'export', 'refused', 'evidence_request', 'evidence_view', 'evidence_download'));
