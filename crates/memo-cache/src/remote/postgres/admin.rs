//! The CLI's operations on the PostgreSQL tier: stats, clear and prune, each on a one-off
//! connection, never making the tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use super::schema::{Tables, refusal};
use super::{Failure, block_on, client_config, describe, tls};
use crate::error::{Error, Result};
use crate::remote::{RemoteConfig, RemoteFunctionStats, RemoteStats, redact};

/// How long an explicit operation (stats, clear, prune) may take.
const ADMIN_BUDGET: Duration = Duration::from_secs(600);

/// A one-off connection for the CLI's operations; `op` gets the client and whether the prefix's
/// tables exist (they are never made by these operations).
fn admin<T: Send>(
    config: &RemoteConfig,
    op: impl AsyncFnOnce(&Client, &Tables, bool) -> std::result::Result<T, tokio_postgres::Error> + Send,
) -> Result<T> {
    let url = config.display_urls();
    let pg = client_config(config).map_err(|reason| Error::BadRemote {
        url: url.clone(),
        reason,
    })?;
    let tables = Tables::of(&config.prefix);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::RemoteServer {
            url: url.clone(),
            message: format!("cannot start the client's runtime: {e}"),
        })?;
    let connect_budget = config.connect_timeout + config.command_timeout;
    let (pg, tables, prefix) = (&pg, &tables, config.prefix.as_str());
    let work = move || async move {
        let (client, connection) =
            match tokio::time::timeout(connect_budget, pg.connect(tls())).await {
                Ok(connected) => connected.map_err(Failure::from)?,
                Err(_) => return Err(Failure::Timeout(connect_budget)),
            };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // Whether the prefix's table is there, and ours: a table of its name that
        // memo_cache_schema does not record for this prefix is someone else's, never touched.
        let probe = async {
            let row = client
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL, \
                     to_regclass('memo_cache_schema') IS NOT NULL",
                    &[&tables.values],
                )
                .await?;
            let (exists, schema): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
            let recorded: Option<String> = if exists && schema {
                client
                    .query_opt(
                        "SELECT prefix FROM memo_cache_schema WHERE table_name = $1",
                        &[&tables.name],
                    )
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?
            } else {
                None
            };
            Ok::<_, tokio_postgres::Error>((exists, recorded))
        };
        let (exists, recorded) = match tokio::time::timeout(connect_budget, probe).await {
            Ok(probed) => probed?,
            Err(_) => return Err(Failure::Timeout(connect_budget)),
        };
        if exists && let Some(reason) = refusal(tables, prefix, recorded.as_deref()) {
            return Err(Failure::Other(reason));
        }
        match tokio::time::timeout(ADMIN_BUDGET, op(&client, tables, exists)).await {
            Ok(done) => done.map_err(Failure::from),
            Err(_) => Err(Failure::Timeout(ADMIN_BUDGET)),
        }
    };
    let done = block_on(&runtime, work);
    runtime.shutdown_background();
    done.map_err(|e| match e {
        Failure::Postgres(source) => Error::Postgres {
            url: redact(&config.urls[0]),
            source,
        },
        other => Error::RemoteServer {
            url: redact(&config.urls[0]),
            message: describe(&other),
        },
    })
}

/// Counts the prefix's values, their bytes and held locks, by function.
pub(crate) fn stats(config: &RemoteConfig) -> Result<RemoteStats> {
    admin(config, async |client: &Client, tables: &Tables, exists| {
        let mut stats = RemoteStats {
            nodes: 1,
            table: Some(tables.name.clone()),
            ..RemoteStats::default()
        };
        if !exists {
            return Ok(stats);
        }
        let rows = client
            .query(
                &tables.sql(
                    "SELECT function, count(*), coalesce(sum(size), 0)::bigint, \
                     count(*) FILTER (WHERE expires <= now()) \
                     FROM {values} GROUP BY function ORDER BY 3 DESC, 1",
                ),
                &[],
            )
            .await?;
        for row in rows {
            let (values, bytes, expired): (i64, i64, i64) =
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            stats.values += values as u64;
            stats.bytes += bytes as u64;
            stats.expired += expired as u64;
            stats.functions.push(RemoteFunctionStats {
                name: row.try_get(0)?,
                values: values as u64,
                bytes: bytes as u64,
            });
        }
        let locks: i64 = client
            .query_one(
                &tables.sql("SELECT count(*) FROM {locks} WHERE expires > clock_timestamp()"),
                &[],
            )
            .await?
            .try_get(0)?;
        stats.locks = locks as u64;
        let disk: i64 = client
            .query_one(
                "SELECT pg_total_relation_size(to_regclass($1))",
                &[&tables.values],
            )
            .await?
            .try_get(0)?;
        stats.disk_bytes = Some(disk as u64);
        Ok(stats)
    })
}

/// Removes the prefix's values (of `function` only, when given); returns how many went.
pub(crate) fn clear(config: &RemoteConfig, function: Option<&str>) -> Result<u64> {
    admin(config, async |client: &Client, tables: &Tables, exists| {
        if !exists {
            return Ok(0);
        }
        match function {
            Some(name) => {
                client
                    .execute(
                        &tables.sql("DELETE FROM {values} WHERE function = $1"),
                        &[&name],
                    )
                    .await
            }
            None => {
                client
                    .execute(&tables.sql("DELETE FROM {values}"), &[])
                    .await
            }
        }
    })
}

/// Removes the prefix's expired values and those created over `older_than` ago, and lock rows
/// whose lease ran out; returns how many values went.
pub(crate) fn prune(config: &RemoteConfig, older_than: Option<Duration>) -> Result<u64> {
    // An age longer than the calendar means "nothing is that old": the earliest time the
    // server takes (0001-01-01), not an overflow or an out-of-range error.
    let earliest = UNIX_EPOCH - Duration::from_secs(62_135_596_800);
    let before = older_than.map(|age| {
        SystemTime::now()
            .checked_sub(age)
            .map_or(earliest, |at| at.max(earliest))
    });
    admin(config, async |client: &Client, tables: &Tables, exists| {
        if !exists {
            return Ok(0);
        }
        let removed = client
            .execute(
                &tables.sql(
                    "DELETE FROM {values} WHERE expires <= now() \
                     OR ($1::timestamptz IS NOT NULL AND created < $1)",
                ),
                &[&before],
            )
            .await?;
        client
            .execute(
                &tables.sql("DELETE FROM {locks} WHERE expires < clock_timestamp()"),
                &[],
            )
            .await?;
        Ok(removed)
    })
}
