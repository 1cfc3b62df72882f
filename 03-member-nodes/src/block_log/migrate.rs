//! The schema, applied at start by whichever node gets there first.

use anyhow::{Context, bail};

/// Schema migrations, applied in order at start; the list only ever grows.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_chain_and_blocks.sql"),
    include_str!("../../migrations/0002_retention.sql"),
    include_str!("../../migrations/0003_chain_config.sql"),
    include_str!("../../migrations/0004_genesis_forks.sql"),
    include_str!("../../migrations/0005_blob_schedule.sql"),
];

/// Held while migrating, so nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6d65_6d62_6572; // "member"

/// Applies the migrations this database lacks, once, whoever starts first.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?.get(0);
    let known = i32::try_from(MIGRATIONS.len())?;
    if applied > known {
        bail!("the database schema is at version {applied}, newer than this binary knows ({known})");
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(applied)?) {
        tx.batch_execute(sql).await.with_context(|| format!("migration {version}"))?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await?;
    }
    tx.commit().await?;
    Ok(())
}
