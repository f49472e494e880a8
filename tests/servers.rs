//! Real servers for the remote-tier tests: `redis-server` and `moto_server`
//! (an S3 emulator), started on a free loopback port, waited for, and
//! killed when dropped. Without the program, outside CI a test skips with a
//! loud message; with `CI=true` it fails, so CI cannot pass by skipping.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `redis-server`.
    Redis,
    /// `moto_server` (S3).
    Moto,
}

/// A running server; killed on drop.
pub struct Server {
    /// Which server it is.
    pub kind: Kind,
    /// Its loopback port.
    pub port: u16,
    child: Child,
    /// A scratch directory the server may write to.
    _dir: tempfile::TempDir,
}

/// The bucket the S3 tests use.
pub const BUCKET: &str = "memo-test";

fn program(kind: Kind) -> &'static str {
    match kind {
        Kind::Redis => "redis-server",
        Kind::Moto => "moto_server",
    }
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

/// A free loopback port (bound, read and released).
///
/// # Panics
///
/// If no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Server {
    /// Starts the server, or returns `None` (after saying so loudly) when
    /// its program is missing outside CI.
    ///
    /// # Panics
    ///
    /// With `CI=true` when the program is missing, and when it does not
    /// answer after three starts.
    #[must_use]
    pub fn start(kind: Kind) -> Option<Server> {
        if !Server::available(kind) {
            return None;
        }
        let prog = program(kind);
        for _ in 0..3 {
            if let Some(s) = Server::start_on(kind, free_port()) {
                return Some(s);
            }
        }
        panic!("{prog} did not start on a free port in three tries");
    }

    /// Whether `kind`'s server program is installed. Outside CI a missing
    /// one skips the test with a loud message; with `CI=true` it fails.
    ///
    /// # Panics
    ///
    /// Under `CI=true`, if the program is missing.
    #[must_use]
    pub fn available(kind: Kind) -> bool {
        let prog = program(kind);
        if on_path(prog) {
            return true;
        }
        let msg = format!(
            "{prog} is not installed: the {kind:?} remote-tier tests need it (.ci/run installs it)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("\n*** SKIPPED: {msg} ***\n");
        false
    }

    /// Starts the server on `port`; `None` if it does not answer in time.
    ///
    /// # Panics
    ///
    /// If the program cannot be run.
    #[must_use]
    pub fn start_on(kind: Kind, port: u16) -> Option<Server> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = match kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .arg("--dir")
                    .arg(dir.path());
                c
            }
            Kind::Moto => {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut s = Server {
            kind,
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if s.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if s.answers() {
                if kind == Kind::Moto {
                    let (code, _) = s.http("PUT", &format!("/{BUCKET}"), &[]);
                    assert!(code == 200, "creating the bucket answered {code}");
                }
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn answers(&self) -> bool {
        match self.kind {
            Kind::Redis => self
                .redis(&[b"PING"])
                .is_some_and(|r| r.starts_with(b"+PONG")),
            Kind::Moto => {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok() && {
                    let (code, _) = self.http("GET", "/", &[]);
                    code == 200
                }
            }
        }
    }

    /// The remote URL of this server (S3: the test bucket, `prefix`).
    #[must_use]
    pub fn url(&self, prefix: &str) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}/0", self.port),
            Kind::Moto => format!("s3://{BUCKET}/{prefix}"),
        }
    }

    /// The environment a process needs to reach this server (S3's `AWS_*`).
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        match self.kind {
            Kind::Redis => Vec::new(),
            Kind::Moto => s3_env(self.port),
        }
    }

    /// Kills the server (`kill -9`) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One Redis command over a fresh connection; the raw reply.
    #[must_use]
    pub fn redis(&self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).ok()?;
        read_resp(&mut s)
    }

    /// One HTTP request to the S3 emulator (moto does not check
    /// signatures); the status and body.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    #[must_use]
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // moto answers anonymous requests for private objects with 403, and
        // does not check signatures: any credential will do.
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n";
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).expect("send");
        s.write_all(body).expect("send");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text_end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(resp.len());
        let head = String::from_utf8_lossy(&resp[..text_end]).to_string();
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp.get(text_end + 4..).unwrap_or(&[]).to_vec();
        // Chunked bodies are not expected for the small objects read here.
        (code, body)
    }

    /// The raw bytes of object `name` (relative to the remote's root).
    #[must_use]
    pub fn read_object(&self, prefix: &str, name: &str) -> Option<Vec<u8>> {
        match self.kind {
            Kind::Redis => {
                let r = self.redis(&[b"GET", name.as_bytes()])?;
                bulk(&r)
            }
            Kind::Moto => {
                let (code, body) = self.http("GET", &format!("/{BUCKET}/{prefix}/{name}"), &[]);
                (code == 200).then_some(body)
            }
        }
    }

    /// Overwrites object `name` with `bytes`, as a hostile writer could.
    ///
    /// # Panics
    ///
    /// If the server refuses.
    pub fn write_object(&self, prefix: &str, name: &str, bytes: &[u8]) {
        match self.kind {
            Kind::Redis => {
                let r = self.redis(&[b"SET", name.as_bytes(), bytes]).expect("SET");
                assert!(r.starts_with(b"+OK"), "{}", String::from_utf8_lossy(&r));
            }
            Kind::Moto => {
                let (code, _) = self.http("PUT", &format!("/{BUCKET}/{prefix}/{name}"), bytes);
                assert_eq!(code, 200);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads one RESP reply (simple, error, integer or bulk string).
fn read_resp(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return Some(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        if buf[0] != b'$' {
            return Some(buf);
        }
        let len: i64 = std::str::from_utf8(&buf[1..eol]).ok()?.parse().ok()?;
        if len < 0 || buf.len() >= eol + 2 + len as usize + 2 {
            return Some(buf);
        }
    }
}

/// The payload of a bulk-string reply; `None` for a nil one.
fn bulk(r: &[u8]) -> Option<Vec<u8>> {
    let eol = r.windows(2).position(|w| w == b"\r\n")?;
    let len: i64 = std::str::from_utf8(r.get(1..eol)?).ok()?.parse().ok()?;
    let len = usize::try_from(len).ok()?;
    r.get(eol + 2..eol + 2 + len).map(<[u8]>::to_vec)
}

/// The `AWS_*` environment of an S3 endpoint on loopback `port`.
#[must_use]
pub fn s3_env(port: u16) -> Vec<(String, String)> {
    vec![
        (
            "AWS_ENDPOINT_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}
