-- Version 5: the lease sweep reads the started tasks through `tasks_running`
-- (there are few: at most every node's claimed tasks), so `tasks_lease` goes:
-- one index less to keep up on every claim and every ending.
DROP INDEX tasks_lease;
