//! A real HTTPS server on 127.0.0.1 for the fetch tests: rustls (aws-lc-rs
//! provider, as the client) with certificates made by rcgen at test time,
//! and a tiny HTTP/1.1 responder whose answers each test chooses. Every
//! connection is closed after one answer. Every loop here is bounded, and
//! every thread ends with its connection or its server.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A test certificate authority.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("jwt_rls test CA {name}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to a fresh file and returns its path.
    pub fn write(&self) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "jwt_rls_fetch_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A TLS server configuration with a leaf for `names`, signed by this CA.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

/// What the server answers to one request.
pub enum Reply {
    /// A complete answer.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 302 to this location.
    Redirect(String),
    /// 200 with a Content-Length of `total`, one byte every `every`.
    Drip { total: usize, every: Duration },
    /// 200 with no Content-Length, ended by closing: writes up to `total`
    /// bytes, as fast as the client takes them.
    Endless { total: usize },
    /// These bytes instead of an HTTP answer.
    Raw(Vec<u8>),
    /// Nothing, until `time` has passed.
    Silence(Duration),
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type Routes = dyn Fn(&str) -> Reply + Send + Sync;

/// What the server saw and did.
#[derive(Default)]
pub struct Log {
    pub requests: Mutex<Vec<Request>>,
    pub connections: AtomicUsize,
    /// Body bytes the server managed to write.
    pub body_bytes: AtomicUsize,
}

impl Log {
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

/// An HTTPS server on 127.0.0.1; stopped (its port closed) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(
        tls: Arc<ServerConfig>,
        routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Log::default());
        let routes: Arc<Routes> = Arc::new(routes);
        let accept = {
            let (stop, log) = (stop.clone(), log.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            log.connections.fetch_add(1, Ordering::Relaxed);
                            let (tls, routes, log) = (tls.clone(), routes.clone(), log.clone());
                            thread::spawn(move || {
                                let _ = serve(stream, tls, &*routes, &log);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped here: the port refuses from now on.
            })
        };
        Server {
            addr,
            log,
            stop,
            accept: Some(accept),
        }
    }

    /// The server's origin, `https://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Stops accepting and closes the port; open connections run out.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    tcp: TcpStream,
    tls: Arc<ServerConfig>,
    routes: &Routes,
    log: &Log,
) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    // No test waits longer than this; a client that went away must not
    // keep the thread.
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    let conn = ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    let request = read_request(&mut s)?;
    let path = request.path.clone();
    log.requests.lock().unwrap().push(request);
    match routes(&path) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes())?;
            s.write_all(&body)?;
            log.body_bytes.fetch_add(body.len(), Ordering::Relaxed);
        }
        Reply::Redirect(location) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes())?;
        }
        Reply::Drip { total, every } => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
            s.write_all(head.as_bytes())?;
            for _ in 0..total {
                thread::sleep(every);
                s.write_all(b" ")?;
                s.flush()?;
                log.body_bytes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Reply::Endless { total } => {
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            // Valid JSON as far as it goes, so only the size can stop it.
            let chunk = [b' '; 64 << 10];
            let mut sent = 0;
            while sent < total {
                s.write_all(&chunk)?;
                sent += chunk.len();
                log.body_bytes.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        }
        Reply::Raw(bytes) => s.write_all(&bytes)?,
        Reply::Silence(time) => {
            let end = Instant::now() + time;
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    s.conn.send_close_notify();
    s.flush()?;
    Ok(())
}

/// Reads one request head (at most 16 KiB).
fn read_request(s: &mut impl Read) -> std::io::Result<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 || s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Request { path, headers })
}
