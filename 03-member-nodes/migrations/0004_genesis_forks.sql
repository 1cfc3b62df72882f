-- The forks in force at block 0, summed up in 4 bytes as the fork id sums up those after
-- it: block 0 does not tell them apart (Osaka at block 0 gives the same block 0 as no
-- Osaka), and the fork id leaves them out. NULL in a store made before this migration,
-- which is then checked on what it names.
ALTER TABLE chain
    ADD COLUMN genesis_forks BYTEA CHECK (octet_length(genesis_forks) = 4);
