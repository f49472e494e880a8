//! `redis://host:port[/db]`: Redis or Valkey, through the `redis` crate's
//! sync API (no runtime). Objects are strings under their names. A value up
//! to 64 MiB is one `SET NX` (copied once, into the command, as the raw
//! client does). A larger one is streamed in 64 MiB chunks into a temporary
//! key allocated whole on the server (`SETRANGE`), and renamed in with
//! `RENAMENX`, which is create-only. Redis strings stop at
//! 512 MB (`proto-max-bulk-len`): larger values are not uploaded, with a
//! reason. Leases are `SET NX PX`, renewed and released by scripts that act
//! only for their holder.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, IntoConnectionInfo, Script};

use super::{Backend, LeaseState};

/// Values up to this size go in one `SET`; larger ones in chunks of it.
const CHUNK: usize = 64 << 20;
/// Redis's string limit (512 MB), less the object header.
const MAX_OBJECT: u64 = 512 << 20;
/// How long a half-sent upload may linger if its writer dies.
const TMP_TTL_MS: u64 = 3_600_000;

pub(crate) struct RedisBackend {
    client: Client,
    timeout: Duration,
    /// Idle connections; a failed one is dropped, not returned.
    idle: Mutex<Vec<Connection>>,
    renew: Script,
    release: Script,
}

fn err(e: &redis::RedisError) -> io::Error {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_io_error() || e.is_connection_dropped() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

impl RedisBackend {
    pub(crate) fn open(url: &str, timeout: Duration) -> Result<RedisBackend, String> {
        let info = url
            .into_connection_info()
            .map_err(|e| format!("not a Redis URL: {e}"))?;
        // Without `CLIENT SETINFO` on connect: its reply is waited for (and
        // its failure ignored), so a server that hangs would cost two
        // timeouts per try instead of one.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = Client::open(info.set_redis_settings(settings))
            .map_err(|e| format!("not a Redis URL: {e}"))?;
        Ok(RedisBackend {
            client,
            timeout,
            idle: Mutex::new(Vec::new()),
            renew: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
            ),
            release: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   return redis.call('DEL', KEYS[1]) else return 0 end",
            ),
        })
    }

    /// Runs `f` on an idle connection (or a new one, made within the
    /// timeout); the connection goes back only if `f` succeeded.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> io::Result<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut con = if let Some(c) = idle {
            c
        } else {
            let c = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| err(&e))?;
            c.set_read_timeout(Some(self.timeout))
                .map_err(|e| err(&e))?;
            c.set_write_timeout(Some(self.timeout))
                .map_err(|e| err(&e))?;
            c
        };
        let out = f(&mut con).map_err(|e| err(&e))?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(con);
        Ok(out)
    }
}

impl Backend for RedisBackend {
    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        // SCAN in pages, each a call of its own under the timeout, so a
        // large keyspace does not block the server or trip the timeout.
        let pattern = format!("{prefix}*");
        let mut out = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, names): (u64, Vec<String>) = self.with(|c| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
            })?;
            out.extend(names);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    fn get(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let got: Option<Vec<u8>> = self.with(|c| redis::cmd("GET").arg(name).query(c))?;
        match got {
            Some(v) if v.len() as u64 > max => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name}: {} bytes, more than any entry", v.len()),
            )),
            v => Ok(v),
        }
    }

    fn create(&self, name: &str, header: &[u8], value: &[u8]) -> io::Result<bool> {
        if value.len() <= CHUNK {
            let obj = Object { header, value };
            let set: Option<String> =
                self.with(|c| redis::cmd("SET").arg(name).arg(obj).arg("NX").query(c))?;
            return Ok(set.is_some());
        }
        let exists: bool = self.with(|c| redis::cmd("EXISTS").arg(name).query(c))?;
        if exists {
            return Ok(false);
        }
        let tmp = format!("{name}.tmp.{}", super::holder_id());
        let total = header.len() + value.len();
        let sent = self.with(|c| {
            // One allocation of the whole string on the server (zeros up
            // to its last byte), then every chunk written in place: APPEND
            // would reallocate and copy the growing string per chunk.
            redis::cmd("SETRANGE")
                .arg(&tmp)
                .arg(total - 1)
                .arg(&[0u8][..])
                .exec(c)?;
            redis::cmd("PEXPIRE").arg(&tmp).arg(TMP_TTL_MS).exec(c)?;
            redis::cmd("SETRANGE")
                .arg(&tmp)
                .arg(0)
                .arg(header)
                .exec(c)?;
            let mut at = header.len();
            for chunk in value.chunks(CHUNK) {
                redis::cmd("SETRANGE")
                    .arg(&tmp)
                    .arg(at)
                    .arg(chunk)
                    .exec(c)?;
                at += chunk.len();
            }
            // Renamed in (create-only) and made permanent in one step.
            let (renamed, _): (i64, i64) = redis::pipe()
                .atomic()
                .cmd("RENAMENX")
                .arg(&tmp)
                .arg(name)
                .cmd("PERSIST")
                .arg(name)
                .query(c)?;
            Ok(renamed == 1)
        });
        if !matches!(sent, Ok(true)) {
            let _ = self.with(|c| redis::cmd("DEL").arg(&tmp).exec(c));
        }
        sent
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<LeaseState> {
        let set: Option<String> = self.with(|c| {
            redis::cmd("SET")
                .arg(name)
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query(c)
        })?;
        Ok(if set.is_some() {
            LeaseState::Acquired
        } else {
            LeaseState::Held
        })
    }

    fn renew(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool> {
        let n: i64 = self.with(|c| {
            self.renew
                .key(name)
                .arg(holder)
                .arg(ttl.as_millis() as u64)
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    fn release(&self, name: &str, holder: &str) -> io::Result<()> {
        self.with(|c| self.release.key(name).arg(holder).invoke::<i64>(c))?;
        Ok(())
    }

    fn max_value(&self) -> Option<u64> {
        Some(MAX_OBJECT - super::object::HEADER_LEN as u64)
    }
}

/// An object as one command argument, written from its two parts: the
/// value is copied once, into the command, as the raw client copies it.
struct Object<'a> {
    header: &'a [u8],
    value: &'a [u8],
}

impl redis::ToRedisArgs for Object<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        // Writing to the command's buffer cannot fail.
        let _ = w.write_all(self.header);
        let _ = w.write_all(self.value);
    }
}

impl redis::ToSingleRedisArg for Object<'_> {}
