//! One connection and its prepared statements: a row read whole or in slices from one
//! snapshot, written by one upsert or by binary `COPY` in slices (see the parent module's
//! documentation).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, Statement};

use super::schema::{Tables, migrate};
use super::{Failure, INLINE, MIN_RATE, Reply, SLICE_IN, SLICE_OUT, tls};
use crate::key::Digest;
use crate::remote::{Entry, HEADER};

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One connection and the statements prepared on it.
pub(super) struct Lane {
    pub(super) client: Client,
    get: Statement,
    meta: Statement,
    slice: Statement,
    upsert: Statement,
    delete: Statement,
    pub(super) lock: Statement,
    pub(super) renew: Statement,
    pub(super) unlock: Statement,
}

impl Lane {
    /// Connects, brings the prefix's tables to this build's schema, and prepares the statements.
    pub(super) async fn connect(pg: &Config, tables: &Tables, prefix: &str) -> Reply<Lane> {
        let (mut client, connection) = pg.connect(tls()).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the next statement
            // reports the latter.
            let _ = connection.await;
        });
        migrate(&mut client, tables, prefix).await?;
        let sql = |template: &str| tables.sql(template);
        let (get, meta, slice, upsert) = futures_util::future::try_join4(
            client.prepare(&sql(
                "SELECT hash, octet_length(value)::bigint, created, expires, \
                 CASE WHEN octet_length(value) <= $2::bigint THEN value END \
                 FROM {values} WHERE key = $1 AND (expires IS NULL OR expires > now())",
            )),
            client.prepare(&sql(
                "SELECT hash, octet_length(value)::bigint, created, expires, NULL::bytea \
                 FROM {values} WHERE key = $1 AND (expires IS NULL OR expires > now())",
            )),
            client.prepare(&sql(
                "SELECT substring(value FROM $2 FOR $3) FROM {values} WHERE key = $1",
            )),
            client.prepare(&sql(
                "INSERT INTO {values} (key, hash, size, created, expires, function, value) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET \
                 hash = EXCLUDED.hash, size = EXCLUDED.size, created = EXCLUDED.created, \
                 expires = EXCLUDED.expires, function = EXCLUDED.function, value = EXCLUDED.value",
            )),
        )
        .await?;
        let (delete, lock, renew, unlock) = futures_util::future::try_join4(
            client.prepare(&sql("DELETE FROM {values} WHERE key = $1")),
            client.prepare(&sql("INSERT INTO {locks} (key, token, expires) \
                 VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 millisecond') \
                 ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, \
                 expires = EXCLUDED.expires WHERE {locks}.expires < clock_timestamp() \
                 RETURNING token")),
            client.prepare(&sql(
                "UPDATE {locks} SET expires = clock_timestamp() + $3::float8 * interval \
                 '1 millisecond' WHERE key = $1 AND token = $2",
            )),
            client.prepare(&sql("DELETE FROM {locks} WHERE key = $1 AND token = $2")),
        )
        .await?;
        Ok(Lane {
            client,
            get,
            meta,
            slice,
            upsert,
            delete,
            lock,
            renew,
            unlock,
        })
    }

    /// The envelope of `key`'s unexpired row, if any (see [`PostgresBackend`]'s `get`).
    pub(super) async fn fetch(
        &mut self,
        key: &[u8],
        max: usize,
        step: Duration,
    ) -> Reply<Option<Vec<u8>>> {
        let slice_step = step + Duration::from_secs_f64(SLICE_IN as f64 / MIN_RATE);
        let inline = INLINE as i64;
        let params: [&(dyn ToSql + Sync); 2] = [&key, &inline];
        let Some(row) = within(step, self.client.query_opt(&self.get, &params)).await? else {
            return Ok(None);
        };
        let meta = Meta::of(&row)?;
        if meta.size > max {
            return Ok(None);
        }
        if let Some(value) = row.try_get::<_, Option<&[u8]>>(4)? {
            let mut out = Vec::with_capacity(HEADER + value.len());
            out.resize(HEADER, 0);
            out.extend_from_slice(value);
            return Ok(Some(meta.seal(out)));
        }
        // Larger: in slices, from one snapshot.
        let (meta_statement, slice) = (self.meta.clone(), self.slice.clone());
        let start = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start();
        let tx = within(step, start).await?;
        // The server's own deadline for each slice is ours: a database's `statement_timeout`
        // shorter than what the transfer is given must not cut it off.
        within(step, tx.batch_execute(&statement_timeout(slice_step))).await?;
        let Some(row) = within(step, tx.query_opt(&meta_statement, &[&key])).await? else {
            return Ok(None);
        };
        let meta = Meta::of(&row)?;
        if meta.size > max {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(HEADER + meta.size);
        out.resize(HEADER, 0);
        while out.len() - HEADER < meta.size {
            let offset = out.len() - HEADER;
            let length = SLICE_IN.min(meta.size - offset);
            let (from, length) = (offset as i32 + 1, length as i32);
            let params: [&(dyn ToSql + Sync); 3] = [&key, &from, &length];
            let row = within(slice_step, tx.query_one(&slice, &params)).await?;
            let piece: &[u8] = row.try_get(0)?;
            if piece.is_empty() {
                // The size column lied: the hash check will refuse what there is.
                break;
            }
            out.extend_from_slice(&piece[..piece.len().min(length as usize)]);
        }
        within(step, tx.commit()).await?;
        Ok(Some(meta.seal(out)))
    }

    /// Stores `entry` under `key`, replacing any older row; a large value's COPY is given
    /// `budget` on the server too.
    pub(super) async fn store(
        &mut self,
        key: &[u8],
        entry: &Entry<'_>,
        copy: &str,
        budget: Duration,
    ) -> Reply<()> {
        let created = system_time(entry.created);
        let expires = entry.expires.map(system_time);
        let size = entry.bytes.len() as i64;
        let hash: &[u8] = &entry.hash.0;
        if entry.bytes.len() <= INLINE {
            self.client
                .execute(
                    &self.upsert,
                    &[
                        &key,
                        &hash,
                        &size,
                        &created,
                        &expires,
                        &entry.function,
                        &entry.bytes,
                    ],
                )
                .await?;
            return Ok(());
        }
        let delete = self.delete.clone();
        let tx = self.client.transaction().await?;
        // As for a read: the transfer's deadline, not the database's `statement_timeout`.
        tx.batch_execute(&statement_timeout(budget)).await?;
        tx.execute(&delete, &[&key]).await?;
        let sink = tx.copy_in::<_, Bytes>(copy).await?;
        let mut sink = std::pin::pin!(sink);
        sink.send(copy_head(key, entry)).await?;
        for slice in entry.bytes.chunks(SLICE_OUT) {
            sink.send(Bytes::copy_from_slice(slice)).await?;
        }
        sink.send(Bytes::from_static(b"\xff\xff")).await?; // the end: -1 fields
        sink.as_mut().finish().await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `SET LOCAL statement_timeout` to `limit`: for the rest of the transaction, the server ends a
/// statement when the client would stop waiting for it.
fn statement_timeout(limit: Duration) -> String {
    format!("SET LOCAL statement_timeout = {}", limit.as_millis().max(1))
}

/// `future`'s outcome, or a timeout after `limit`.
async fn within<T>(
    limit: Duration,
    future: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Reply<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(Failure::Timeout(limit)),
    }
}

/// The COPY binary stream up to the value's bytes: the format's header, then one row's fields
/// (key, hash, size, created, expires, function) and the value's length.
fn copy_head(key: &[u8], entry: &Entry<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + entry.function.len());
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0); // flags
    out.put_i32(0); // header extension
    out.put_i16(7); // fields
    let field = |out: &mut BytesMut, bytes: &[u8]| {
        out.put_i32(bytes.len() as i32);
        out.put_slice(bytes);
    };
    field(&mut out, key);
    field(&mut out, &entry.hash.0);
    field(&mut out, &(entry.bytes.len() as i64).to_be_bytes());
    field(&mut out, &pg_micros(entry.created).to_be_bytes());
    match entry.expires {
        Some(at) => field(&mut out, &pg_micros(at).to_be_bytes()),
        None => out.put_i32(-1),
    }
    field(&mut out, entry.function.as_bytes());
    out.put_i32(entry.bytes.len() as i32);
    out.freeze()
}

/// Milliseconds since the Unix epoch as PostgreSQL's binary timestamp: microseconds since 2000.
fn pg_micros(ms: i64) -> i64 {
    ms.saturating_mul(1000).saturating_sub(PG_EPOCH_MICROS)
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

/// The envelope's fields of a row.
struct Meta {
    hash: Digest,
    size: usize,
    created: i64,
    expires: Option<i64>,
}

impl Meta {
    fn of(row: &tokio_postgres::Row) -> Reply<Meta> {
        let hash: &[u8] = row.try_get(0)?;
        let size: i64 = row.try_get(1)?;
        let created: SystemTime = row.try_get(2)?;
        let expires: Option<SystemTime> = row.try_get(3)?;
        Ok(Meta {
            // A hash column of the wrong length: a hash that matches nothing.
            hash: Digest::from_slice(hash).unwrap_or(Digest([0; 32])),
            size: usize::try_from(size).unwrap_or(usize::MAX),
            created: unix_ms(created),
            expires: expires.map(unix_ms),
        })
    }

    /// `out` (the value after [`HEADER`] bytes of room) with the envelope's header written in.
    fn seal(&self, mut out: Vec<u8>) -> Vec<u8> {
        let header = crate::remote::header(&out[HEADER..], &self.hash, self.created, self.expires);
        out[..HEADER].copy_from_slice(&header);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_both_ways() {
        for ms in [0, 1, 1_700_000_000_123, -5] {
            assert_eq!(unix_ms(system_time(ms)), ms);
        }
        assert_eq!(pg_micros(946_684_800_000), 0);
    }

    #[test]
    fn the_copy_head_ends_with_the_value_length() {
        let hash = Digest::of(b"v");
        let entry = Entry {
            bytes: &[7; 10],
            hash: &hash,
            created: 946_684_800_000,
            expires: None,
            function: "f",
        };
        let head = copy_head(&[1; 32], &entry);
        assert!(head.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert_eq!(&head[head.len() - 4..], &10i32.to_be_bytes());
        // The expiry is NULL: a length of -1 before the function's length and name.
        assert_eq!(
            &head[head.len() - 13..head.len() - 9],
            &(-1i32).to_be_bytes()
        );
    }
}
