//! The tables of a prefix: their names, made from the prefix, and the migrations that make
//! them (see the parent module's documentation).

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::{Failure, Reply};
use crate::key::Digest;

/// The schema version this build writes: the length of [`MIGRATIONS`].
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;
/// The advisory lock that serialises migrations (any value of our own: "memo-cache" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d65_6d6f_2d63_6163;
/// The schema steps, in order, never edited once released: `{values}` and `{locks}` are the
/// prefix's quoted table names.
const MIGRATIONS: &[&str] = &[
    // 1: the values and the locks.
    "CREATE TABLE IF NOT EXISTS {values} (
         key bytea PRIMARY KEY,
         hash bytea NOT NULL,
         size bigint NOT NULL,
         created timestamptz NOT NULL,
         expires timestamptz,
         function text NOT NULL,
         value bytea NOT NULL
     );
     ALTER TABLE {values} ALTER COLUMN value SET STORAGE EXTERNAL;
     CREATE TABLE IF NOT EXISTS {locks} (
         key bytea PRIMARY KEY,
         token text NOT NULL,
         expires timestamptz NOT NULL
     );",
];

/// The tables of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    /// The values table's name, unquoted (it is `[a-z0-9_]` only).
    pub name: String,
    /// The quoted names of the values and the locks tables.
    pub values: String,
    pub locks: String,
}

impl Tables {
    pub(crate) fn of(prefix: &str) -> Tables {
        let name = table_name(prefix);
        Tables {
            values: format!("\"{name}\""),
            locks: format!("\"{name}_locks\""),
            name,
        }
    }

    /// `template` with `{values}` and `{locks}` replaced by the quoted table names.
    pub(crate) fn sql(&self, template: &str) -> String {
        template
            .replace("{values}", &self.values)
            .replace("{locks}", &self.locks)
    }
}

/// The values table of `prefix`: see the module documentation.
pub(crate) fn table_name(prefix: &str) -> String {
    let mut readable = String::new();
    for c in prefix.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            readable.push(c);
        } else if !readable.ends_with('_') {
            readable.push('_');
        }
    }
    let readable: String = readable.trim_matches('_').chars().take(24).collect();
    let readable = readable.trim_end_matches('_');
    let hash = &Digest::of(prefix.as_bytes()).to_hex()[..8];
    if readable.is_empty() {
        format!("memo_cache_{hash}")
    } else {
        format!("memo_cache_{readable}_{hash}")
    }
}

/// What `memo_cache_schema` records of a table: its version, its prefix, and whether both of
/// the prefix's tables are there.
const RECORDED: &str = "SELECT version, prefix, \
    to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL \
    FROM memo_cache_schema WHERE table_name = $1";

/// Why the tables of `prefix` named `tables` are not ours to use, if they are not: a table of
/// that name no row of `memo_cache_schema` records (someone else's), or one recorded for
/// another prefix (whose name collides with this one's).
pub(super) fn refusal(tables: &Tables, prefix: &str, recorded: Option<&str>) -> Option<String> {
    match recorded {
        None => Some(format!(
            "table {} exists but was not made by memo-cache (memo_cache_schema does not \
             record it): it is left alone; rename it, or use another prefix",
            tables.name
        )),
        Some(theirs) if theirs != prefix => Some(format!(
            "table {} holds the values of prefix {theirs:?}, whose table name is the same as \
             this prefix's: it is left alone; use another prefix",
            tables.name
        )),
        Some(_) => None,
    }
}

/// Brings the prefix's tables to [`SCHEMA_VERSION`]: see the module documentation.
pub(super) async fn migrate(client: &mut Client, tables: &Tables, prefix: &str) -> Reply<()> {
    let params: [&(dyn ToSql + Sync); 3] = [&tables.name, &tables.values, &tables.locks];
    // Most connections find the tables current: one read, no lock.
    if let Ok(Some(row)) = client.query_opt(RECORDED, &params).await
        && row.try_get::<_, i32>(0)? == SCHEMA_VERSION
        && row.try_get::<_, &str>(1)? == prefix
        && row.try_get::<_, bool>(2)?
    {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS memo_cache_schema (
             table_name text PRIMARY KEY,
             prefix text NOT NULL,
             version integer NOT NULL,
             migrated timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found = match tx.query_opt(RECORDED, &params).await? {
        Some(row) => {
            let (version, theirs, present): (i32, String, bool) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if let Some(reason) = refusal(tables, prefix, Some(&theirs)) {
                return Err(Failure::Other(reason));
            }
            // Checked before anything is made, so a newer build's tables are never touched.
            if version > SCHEMA_VERSION {
                return Err(Failure::Other(format!(
                    "table {} is at schema version {version}, newer than this memo-cache's \
                     {SCHEMA_VERSION}: upgrade memo-cache, or use another prefix",
                    tables.name
                )));
            }
            // A dropped table is made again (the steps make what is missing).
            if present { version } else { 0 }
        }
        None => {
            // Not recorded: a table of one of our names is someone else's, never altered.
            let taken: bool = tx
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL OR to_regclass($2) IS NOT NULL",
                    &[&tables.values, &tables.locks],
                )
                .await?
                .try_get(0)?;
            if taken {
                return Err(Failure::Other(
                    refusal(tables, prefix, None).expect("refused when not recorded"),
                ));
            }
            0
        }
    };
    for step in &MIGRATIONS[found.max(0) as usize..] {
        tx.batch_execute(&tables.sql(step)).await?;
    }
    tx.execute(
        "INSERT INTO memo_cache_schema (table_name, prefix, version) VALUES ($1, $2, $3) \
         ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version, migrated = now()",
        &[&tables.name, &prefix, &SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_safe_readable_and_distinct() {
        assert!(table_name("memo-cache:").starts_with("memo_cache_memo_cache_"));
        let hostile = table_name("x\"; DROP TABLE users; --");
        assert!(
            hostile
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{hostile}"
        );
        assert_ne!(table_name("a:b"), table_name("a_b"));
        assert_ne!(table_name("A"), table_name("a"));
        assert!(table_name("").starts_with("memo_cache_"));
        let long = table_name(&"é".repeat(40).to_string().repeat(3));
        assert!(long.len() + "_locks".len() <= 63, "{long}");
        assert!(table_name(&"x".repeat(200)).len() + "_locks".len() <= 63);
    }
}
