"""One job: prepare a database, drive the workers, check the audit, write the row."""
