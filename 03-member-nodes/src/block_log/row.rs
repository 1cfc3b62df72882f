//! A stored row, and the checks it passes before Geth sees it.

use std::time::Duration;

use alloy_primitives::B256;
use common::payload::ExecutableBlock;

/// A row of the log, as read. [`StoredRow::block`] checks it before anyone uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Height.
    pub number: u64,
    /// Block hash, as its column says.
    pub hash: B256,
    /// Parent hash, as its column says.
    pub parent_hash: B256,
    /// The payload, as the JSON text PostgreSQL renders it (decoded only by
    /// [`StoredRow::block`], one row at a time).
    pub payload: String,
    /// How long ago it was stored, by the database's clock.
    pub age: Duration,
}

/// Why a stored row cannot be applied. Nothing after it is applied either.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The payload is not an Engine API block.
    #[error("stored block {number} does not decode: {reason}")]
    Undecodable {
        /// Height.
        number: u64,
        /// The decoder's message.
        reason: String,
    },
    /// The payload disagrees with the row's own columns.
    #[error("stored block {number}: the payload is block {payload_number} {payload_hash}, the row says {row_hash}")]
    Mismatch {
        /// Height.
        number: u64,
        /// The payload's height.
        payload_number: u64,
        /// The payload's hash.
        payload_hash: B256,
        /// The row's hash column.
        row_hash: B256,
    },
    /// The payload's contents do not hash to its block hash: it was altered.
    #[error("stored block {number} is corrupt: {reason}")]
    Corrupt {
        /// Height.
        number: u64,
        /// What the check found.
        reason: String,
    },
}

impl StoredRow {
    // ANCHOR: check_row
    /// The block, after checking that the payload decodes, matches the row's columns, and
    /// hashes to its own block hash. A row that fails is never given to Geth.
    pub fn block(&self) -> Result<ExecutableBlock, RowError> {
        let number = self.number;
        let block: ExecutableBlock =
            serde_json::from_str(&self.payload).map_err(|e| RowError::Undecodable { number, reason: e.to_string() })?;
        if block.number() != number || block.hash() != self.hash || block.parent_hash() != self.parent_hash {
            return Err(RowError::Mismatch {
                number,
                payload_number: block.number(),
                payload_hash: block.hash(),
                row_hash: self.hash,
            });
        }
        block.check_hash().map_err(|e| RowError::Corrupt { number, reason: e.to_string() })?;
        Ok(block)
    }
    // ANCHOR_END: check_row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_is_not_a_block_is_refused() {
        let row = StoredRow {
            number: 3,
            hash: B256::repeat_byte(3),
            parent_hash: B256::repeat_byte(2),
            payload: r#"{"garbage": true}"#.to_owned(),
            age: Duration::ZERO,
        };
        assert!(matches!(row.block(), Err(RowError::Undecodable { number: 3, .. })));
    }
}
