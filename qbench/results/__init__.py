"""Results: the column registry, job statuses, the atomic writer and the versioned readers."""
