-- Version 3: remember the lease of an attempt that was rescued (whose
-- worker died), so operators can tell which node lost which tasks.
ALTER TABLE tasks ADD COLUMN rescued_lease TEXT;
