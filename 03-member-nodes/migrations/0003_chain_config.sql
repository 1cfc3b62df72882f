-- The chain's id and fork id beside its block 0: a genesis file's config is not in block 0,
-- so a Geth initialised from a file that differs there alone (another chain id, another
-- fork time) has the same block 0. A node checks its own chain against all three. Empty in
-- a store made before this migration, which is then checked on block 0 alone.
ALTER TABLE chain
    ADD COLUMN chain_id BIGINT CHECK (chain_id >= 0),
    ADD COLUMN fork_id  BYTEA  CHECK (octet_length(fork_id) = 4);
