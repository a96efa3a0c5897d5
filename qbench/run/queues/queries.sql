-- qbench's reference SQLite queue, its statements (the tables are in schema.sql).
-- Each query starts with "-- name: NAME".
-- Python never assembles SQL: values are bound parameters; lists of ids are
-- bound as one JSON array and expanded with json_each.

-- name: insert_task
INSERT INTO tasks (id, state, payload, enqueued_at, attempts, done_at)
VALUES (?, ?, ?, ?, ?, ?)

-- name: begin_immediate
BEGIN IMMEDIATE

-- name: begin_deferred
BEGIN DEFERRED

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: select_ready
SELECT id FROM tasks WHERE state = 0 ORDER BY id LIMIT :batch

-- name: lease_ids
UPDATE tasks
SET state = 1, attempts = attempts + 1, lease_owner = :token, lease_expires_at = :expires_at
WHERE state = 0 AND id IN (SELECT value FROM json_each(:ids))
RETURNING id, attempts, payload

-- name: claim_returning
UPDATE tasks
SET state = 1, attempts = attempts + 1, lease_owner = :token, lease_expires_at = :expires_at
WHERE id IN (SELECT id FROM tasks WHERE state = 0 ORDER BY id LIMIT :batch)
RETURNING id, attempts, payload

-- name: ack_ids
-- Fenced by the lease token: a worker whose lease expired and was claimed
-- again cannot acknowledge the redelivered task.
UPDATE tasks
SET state = 2, done_at = :now, lease_owner = NULL, lease_expires_at = NULL
WHERE state = 1 AND lease_owner = :token AND id IN (SELECT value FROM json_each(:ids))
RETURNING id

-- name: requeue_expired
UPDATE tasks
SET state = 0, lease_owner = NULL, lease_expires_at = NULL
WHERE state = 1 AND lease_expires_at < :now

-- name: count_by_state
SELECT state, count(*) FROM tasks GROUP BY state

-- name: integrity_check
PRAGMA integrity_check
