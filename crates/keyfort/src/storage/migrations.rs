//! Schema migrations: applied at start by `serve` (unless `[storage] migrate_on_start =
//! false`), listed and applied by `keyfort migrate`.
//!
//! A database may hold migrations this binary does not know: during a rolling upgrade the
//! new version migrates first (migrations only add, so the old version keeps working) while
//! nodes of the old version still run and restart. Those are reported, never an error.

use std::collections::BTreeSet;

use sqlx::migrate::{Migrate, Migrator};

/// One migration this version of Keyfort knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    /// Applied to the database (before this run, or by it).
    pub applied: bool,
    /// Applied by this run.
    pub applied_now: bool,
}

/// The database's migrations as this version of Keyfort sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub known: Vec<MigrationState>,
    /// Applied to the database by a newer version of Keyfort.
    pub newer: Vec<i64>,
}

impl MigrationReport {
    pub fn pending(&self) -> impl Iterator<Item = &MigrationState> {
        self.known.iter().filter(|m| !m.applied)
    }
}

/// Whether `e` says the bookkeeping table does not exist yet (a database never migrated).
fn is_missing_table(e: &sqlx::migrate::MigrateError) -> bool {
    let sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db)) = e else { return false };
    db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
}

/// The versions applied to the database behind `conn`.
async fn applied_versions<C: Migrate>(conn: &mut C) -> anyhow::Result<BTreeSet<i64>> {
    match conn.list_applied_migrations().await {
        Ok(applied) => Ok(applied.into_iter().map(|m| m.version).collect()),
        Err(e) if is_missing_table(&e) => Ok(BTreeSet::new()),
        Err(e) => Err(anyhow::anyhow!("cannot list the applied migrations: {e}")),
    }
}

/// Lists `migrator`'s migrations against the database of `pool`, applying the pending ones
/// first when `apply`.
pub(super) async fn report<DB>(
    pool: &sqlx::Pool<DB>,
    migrator: &Migrator,
    apply: bool,
) -> anyhow::Result<MigrationReport>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    let before = applied_versions(&mut *pool.acquire().await?).await?;
    if apply {
        run(pool, migrator).await?;
    }
    let after = if apply { applied_versions(&mut *pool.acquire().await?).await? } else { before.clone() };
    let known: Vec<MigrationState> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: after.contains(&m.version),
            applied_now: after.contains(&m.version) && !before.contains(&m.version),
        })
        .collect();
    let newer = after.iter().copied().filter(|v| !migrator.version_exists(*v)).collect();
    Ok(MigrationReport { known, newer })
}

/// Applies the pending migrations. Several nodes may do so at once: sqlx holds a database
/// lock (PostgreSQL advisory lock) while it migrates. `migrator` must ignore missing
/// migrations (see [`prepared`]).
pub(super) async fn run<DB>(pool: &sqlx::Pool<DB>, migrator: &Migrator) -> anyhow::Result<()>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    migrator.run(pool).await.map_err(|e| anyhow::anyhow!("migrating the database failed: {e}"))
}

/// `migrator` set up to tolerate migrations a newer version applied: they are not ours to
/// judge (see the module comment).
pub(super) fn prepared(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// Refuses a database that lacks one of this version's migrations, for `serve` with
/// `[storage] migrate_on_start = false`.
pub(super) async fn require_current<DB>(pool: &sqlx::Pool<DB>, migrator: &Migrator) -> anyhow::Result<()>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    let report = report(pool, migrator, false).await?;
    let pending: Vec<String> = report.pending().map(|m| format!("{:04} {}", m.version, m.description)).collect();
    if pending.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "the database lacks {} migration(s) this version needs ({}), and [storage] migrate_on_start = false: \
             run `keyfort migrate --config FILE` first",
            pending.len(),
            pending.join(", ")
        )
    }
}
