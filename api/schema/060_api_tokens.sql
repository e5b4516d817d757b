-- API tokens (api/auth.py). The token itself is never stored: only its SHA-256 (hex). A certifier token is
-- scoped to one asset subtree (plant, area or line id) and to a period [period_from, period_to); every token
-- may expire; revoked tokens stay for the audit trail.
CREATE TABLE IF NOT EXISTS api_tokens (
    id          bigserial   PRIMARY KEY,
    token_sha256 text       NOT NULL UNIQUE,
    prefix      text        NOT NULL,                 -- first characters of the token, to recognise it in lists
    role        text        NOT NULL CHECK (role IN ('viewer', 'manager', 'certifier', 'admin')),
    name        text        NOT NULL DEFAULT '',
    scope       text,                                 -- asset id (certifier); NULL: the whole plant
    period_from timestamptz,
    period_to   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK (role <> 'certifier' OR (scope IS NOT NULL AND expires_at IS NOT NULL)),
    CHECK (period_from IS NULL OR period_to IS NULL OR period_from < period_to)
);
