-- The block log of a member-nodes cluster. The schema itself keeps it a single chain:
-- one row per height, and every row but the first extends the row below it.

-- Which chain this store holds, and the fence. Exactly one row.
CREATE TABLE chain (
    id           BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    genesis_hash BYTEA   NOT NULL CHECK (octet_length(genesis_hash) = 32),
    -- Fencing: the term of the newest leader that claimed the store. A block is stored
    -- only by the leader holding this term; a leader whose lease ran out is refused.
    fence_term   BIGINT  NOT NULL DEFAULT 0 CHECK (fence_term >= 0),
    fence_holder TEXT
);

CREATE TABLE blocks (
    number        BIGINT      PRIMARY KEY CHECK (number >= 0),
    hash          BYTEA       NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    parent_hash   BYTEA       CHECK (octet_length(parent_hash) = 32),
    parent_number BIGINT      GENERATED ALWAYS AS (number - 1) STORED,
    -- The leader that stored the block, and its term.
    term          BIGINT      NOT NULL CHECK (term >= 0),
    leader        TEXT        NOT NULL,
    timestamp     BIGINT      NOT NULL,
    tx_count      INTEGER     NOT NULL,
    -- The block as the Engine API carries it (executionPayload, executionRequests).
    payload       JSONB,
    stored_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (number, hash),
    -- Every block but the anchor extends the stored block one height below it.
    FOREIGN KEY (parent_number, parent_hash) REFERENCES blocks (number, hash),
    -- Only the anchor (where the store begins: a block known by number and hash, which a
    -- node's Geth has or gets from its peers) lacks a parent, and only it lacks a payload.
    CHECK ((parent_hash IS NULL) = (payload IS NULL))
);

-- At most one anchor.
CREATE UNIQUE INDEX blocks_one_anchor ON blocks ((TRUE)) WHERE parent_hash IS NULL;
