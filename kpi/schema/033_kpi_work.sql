-- Work items of a parallel backfill (kpi backfill --workers N): one row per machine of a job. Workers claim
-- items with SELECT ... FOR UPDATE SKIP LOCKED, so each machine is computed once; a worker that dies releases
-- its row lock and the item is taken again. The coordinator computes the roll-ups once every item is done.
CREATE TABLE IF NOT EXISTS kpi_work (
    job         uuid        NOT NULL,
    asset_id    text        NOT NULL,
    state       text        NOT NULL DEFAULT 'todo' CHECK (state IN ('todo', 'done', 'failed', 'skipped')),
    worker      int,
    finished_at timestamptz,
    PRIMARY KEY (job, asset_id)
);
