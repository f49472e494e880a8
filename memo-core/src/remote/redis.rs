//! `redis://host:port[/db]`: Redis or Valkey, through the `redis` crate's
//! sync API (no runtime). Objects are strings under their names. A small
//! value is one `SET NX`. A large one is sent in chunks to a temporary key
//! (`SET`, then `APPEND`s: never a second copy of the value in memory) and
//! renamed in with `RENAMENX`, which is create-only. Redis strings stop at
//! 512 MB (`proto-max-bulk-len`): larger values are not uploaded, with a
//! reason. Leases are `SET NX PX`, renewed and released by scripts that act
//! only for their holder.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, Script};

use super::{Backend, LeaseState};

/// Bytes sent per command when a value is uploaded in chunks.
const CHUNK: usize = 8 << 20;
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
        let client = Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
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
            let mut obj = Vec::with_capacity(header.len() + value.len());
            obj.extend_from_slice(header);
            obj.extend_from_slice(value);
            let set: Option<String> =
                self.with(|c| redis::cmd("SET").arg(name).arg(obj).arg("NX").query(c))?;
            return Ok(set.is_some());
        }
        let exists: bool = self.with(|c| redis::cmd("EXISTS").arg(name).query(c))?;
        if exists {
            return Ok(false);
        }
        let tmp = format!("{name}.tmp.{}", super::holder_id());
        let sent = self.with(|c| {
            redis::cmd("SET")
                .arg(&tmp)
                .arg(header)
                .arg("PX")
                .arg(TMP_TTL_MS)
                .exec(c)?;
            for chunk in value.chunks(CHUNK) {
                redis::cmd("APPEND").arg(&tmp).arg(chunk).exec(c)?;
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
