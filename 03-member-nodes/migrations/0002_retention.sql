-- Retention (`--retain-blocks`): a leader deletes the log's oldest blocks and makes the
-- row just below the blocks it keeps the new anchor, in one transaction. The parent check runs at the
-- end of that transaction, not in the middle of it (where the kept block still names a
-- parent just deleted); every other write still checks it at once.
ALTER TABLE blocks ALTER CONSTRAINT blocks_parent_number_parent_hash_fkey DEFERRABLE INITIALLY IMMEDIATE;
