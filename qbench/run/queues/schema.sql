-- The schema of qbench's reference SQLite queue. Each statement starts with "-- name: NAME";
-- it is read with queries.sql (qbench.run.queues.sql.queries), names unique across both.

-- name: create_tasks
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    state INTEGER NOT NULL DEFAULT 0,      -- 0 ready, 1 leased, 2 done
    payload BLOB,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,   -- claims so far
    lease_owner INTEGER,                   -- lease token of the current claim
    lease_expires_at REAL,
    done_at REAL
)

-- name: create_ready_index
-- The claim reads ready tasks in id order: a partial index holds only those.
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (id) WHERE state = 0

-- name: create_lease_index
-- Expired leases are found by expiry among leased tasks only.
CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (lease_expires_at) WHERE state = 1
