-- Poison messages: payloads the collector could not decode or the database refused, kept for a person.
CREATE TABLE IF NOT EXISTS quarantine (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text,
    reason      text,
    payload     bytea
);
