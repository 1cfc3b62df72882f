-- The forks' blob parameters (EIP-7840's target, maximum and base fee update fraction),
-- summed up in 4 bytes: block 0, the fork id and the genesis forks leave them out, and a
-- Geth on other ones takes the same blocks until one holds more blobs than it allows or
-- pays another blob fee. NULL in a store made before this migration, which is then
-- checked on what it names.
ALTER TABLE chain
    ADD COLUMN blob_schedule BYTEA CHECK (octet_length(blob_schedule) = 4);
