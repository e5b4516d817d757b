-- Evidence packs built through the API (POST /api/v1/evidence): the signed zip as served, its request and
-- evaluation summary. Packs are kept; a new request makes a new pack.
CREATE TABLE IF NOT EXISTS evidence_packs (
    id          bigserial   PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    token_id    bigint,
    role        text,
    request     jsonb       NOT NULL,
    manifest    jsonb       NOT NULL,
    summary     jsonb       NOT NULL,
    sha256      text        NOT NULL,
    zip         bytea       NOT NULL
);
