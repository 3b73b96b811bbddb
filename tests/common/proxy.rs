//! A loopback HTTP proxy in front of moto that behaves like a real network and a real IAM:
//! it answers some requests with a 5xx, resets connections before forwarding, forwards and then
//! drops the answer, never answers, throttles, or acknowledges writes at once and applies them
//! later (IAM's read lag). Every request it receives is counted per operation, so a test can
//! compare them with what iamsweep recorded. Loopback only; one request per connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Not forwarded: answered `500 InternalFailure`.
    Error500,
    /// Not forwarded: answered `503` with no error code at all (an unknown 5xx).
    Bare503,
    /// Not forwarded: the connection is reset (RST) as soon as the request is read.
    ResetBefore,
    /// Forwarded (moto acts), then the connection is reset instead of answering.
    DropAfter,
    /// Forwarded (moto acts), then no answer ever comes; the connection stays open.
    HangAfter,
    /// Not forwarded: answered as IAM answers a throttled request.
    Throttle,
    /// Not forwarded: answered `403` with this error code (`InvalidClientTokenId`,
    /// `ExpiredToken`, `AccessDenied`...).
    Refuse(&'static str),
    /// Forwarded (moto acts), answered after this long: a slow network or endpoint.
    SlowAnswer(Duration),
    /// Not forwarded: answered `200 OK` with this JSON body (a service's partial refusal, such
    /// as Security Hub's `FailedFindings`).
    JsonOk(&'static str),
}

/// One request as the proxy saw it, for the test's fault schedule.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The API action (`DetachUserPolicy`, `ListRoots`, ...).
    pub action: String,
    /// 1-based count of this action so far, this one included.
    pub nth: u64,
    /// 1-based count of every request so far.
    pub seq: u64,
}

type Schedule = Box<dyn Fn(&Seen) -> Option<Fault> + Send + Sync>;

struct State {
    /// Each action's credential scopes as signed (`us-east-1/iam`), from `Authorization`.
    scopes: BTreeMap<String, std::collections::BTreeSet<String>>,
    received: BTreeMap<String, u64>,
    faults: BTreeMap<(String, &'static str), u64>,
    seq: u64,
    schedule: Schedule,
    /// Writes of these actions are acknowledged at once and forwarded after `lag`.
    lag: Option<(Duration, Vec<String>)>,
}

/// A running proxy; stops with the process (its runtime lives on its own thread).
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) that forwards everything.
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let state = Arc::new(Mutex::new(State {
            received: BTreeMap::new(),
            faults: BTreeMap::new(),
            seq: 0,
            schedule: Box::new(|_| None),
            lag: None,
            scopes: BTreeMap::new(),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                tx.send(listener.local_addr().expect("addr").port())
                    .expect("send port");
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (state, upstream) = (shared.clone(), upstream.clone());
                    tokio::spawn(async move {
                        let _ = serve(client, &upstream, &state).await;
                    });
                }
            });
        });
        let port = rx.recv().expect("proxy port");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Decides a fault (or none) for each request from now on.
    pub fn set_schedule(&self, f: impl Fn(&Seen) -> Option<Fault> + Send + Sync + 'static) {
        self.state.lock().unwrap().schedule = Box::new(f);
    }

    /// Acknowledges writes of `actions` at once and applies them `lag` later, so reads lag
    /// writes as in IAM. `None` turns it off.
    pub fn set_write_lag(&self, lag: Option<Duration>, actions: &[&str]) {
        self.state.lock().unwrap().lag =
            lag.map(|d| (d, actions.iter().map(|a| a.to_string()).collect()));
    }

    /// Requests received per action (faulted ones included): the HTTP attempts a client made.
    pub fn received(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().received.clone()
    }

    /// The credential scopes (`region/service`) each action was signed for.
    pub fn scopes(&self) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        self.state.lock().unwrap().scopes.clone()
    }

    pub fn total_received(&self) -> u64 {
        self.received().values().sum()
    }

    /// Faults injected, per (action, fault name).
    pub fn faults(&self) -> BTreeMap<(String, &'static str), u64> {
        self.state.lock().unwrap().faults.clone()
    }

    /// Forgets the counts (the schedule stays).
    pub fn reset_counts(&self) {
        let mut st = self.state.lock().unwrap();
        st.received.clear();
        st.faults.clear();
        st.seq = 0;
    }
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::Error500 => "500",
        Fault::Bare503 => "503",
        Fault::ResetBefore => "reset",
        Fault::DropAfter => "drop_after",
        Fault::HangAfter => "hang_after",
        Fault::Throttle => "throttle",
        Fault::Refuse(_) => "refuse",
        Fault::SlowAnswer(_) => "slow",
        Fault::JsonOk(_) => "json_ok",
    }
}

/// One HTTP/1.1 request: its head (request line and headers) and body.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `Action=...` of a query-protocol body (IAM, STS), or the target of a JSON one
    /// (Organizations: `X-Amz-Target: AWSOrganizationsV20161128.ListRoots`).
    fn action(&self) -> String {
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_owned();
        }
        let body = String::from_utf8_lossy(&self.body);
        body.split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("?")
            .to_owned()
    }

    /// The request as sent upstream, asking the server to close after answering.
    fn bytes_for_upstream(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, line) in self.head.split("\r\n").enumerate() {
            if i > 0 {
                let name = line.split(':').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("connection") {
                    continue;
                }
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    let req = Request {
        head,
        body: Vec::new(),
    };
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request { body, ..req }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends the request to moto and returns its whole answer (moto closes after it).
async fn forward(upstream: &str, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&req.bytes_for_upstream()).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// The answer with `Connection: close`, since the proxy closes after each answer.
fn closing(answer: &[u8]) -> Vec<u8> {
    let Some(end) = find(answer, b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("connection") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer[end + 4..]);
    bytes
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_answer(req: &Request, status: &str, code: &str, message: &str, seq: u64) -> Vec<u8> {
    if req.header("x-amz-target").is_some() {
        let body = format!(r#"{{"__type":"{code}","Message":"{message}"}}"#);
        return response(status, "application/x-amz-json-1.1", &body);
    }
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy-{seq}</RequestId></ErrorResponse>"
    );
    response(status, "text/xml", &body)
}

/// The answer IAM gives to a write with no result (DetachUserPolicy, RemoveUserFromGroup...).
fn empty_success(action: &str, seq: u64) -> Vec<u8> {
    let body = format!(
        r#"<{action}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ResponseMetadata><RequestId>lagged-{seq}</RequestId></ResponseMetadata></{action}Response>"#
    );
    response("200 OK", "text/xml", &body)
}

fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

/// `region/service` of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/iam/aws4_request, ...`).
fn credential_scope(auth: &str) -> Option<String> {
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    let parts: Vec<&str> = credential.split('/').collect();
    (parts.len() >= 5).then(|| format!("{}/{}", parts[2], parts[3]))
}

async fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut client).await? else {
        return Ok(());
    };
    let action = req.action();
    let (seen, fault, lag) = {
        let mut st = state.lock().unwrap();
        st.seq += 1;
        if let Some(scope) = req.header("authorization").and_then(credential_scope) {
            st.scopes.entry(action.clone()).or_default().insert(scope);
        }
        let n = st.received.entry(action.clone()).or_insert(0);
        *n += 1;
        let seen = Seen {
            action: action.clone(),
            nth: *n,
            seq: st.seq,
        };
        let fault = (st.schedule)(&seen);
        if let Some(f) = fault {
            *st.faults
                .entry((action.clone(), fault_name(f)))
                .or_insert(0) += 1;
        }
        let lag = st
            .lag
            .as_ref()
            .and_then(|(d, actions)| actions.contains(&action).then_some(*d));
        (seen, fault, lag)
    };
    match fault {
        Some(Fault::Error500) => {
            let a = error_answer(
                &req,
                "500 Internal Server Error",
                "InternalFailure",
                "injected",
                seen.seq,
            );
            client.write_all(&a).await?;
        }
        Some(Fault::Bare503) => {
            client
                .write_all(&response("503 Service Unavailable", "text/plain", ""))
                .await?;
        }
        Some(Fault::Throttle) => {
            let code = if req.header("x-amz-target").is_some() {
                "TooManyRequestsException"
            } else {
                "Throttling"
            };
            let a = error_answer(&req, "400 Bad Request", code, "Rate exceeded", seen.seq);
            client.write_all(&a).await?;
        }
        Some(Fault::Refuse(code)) => {
            let a = error_answer(
                &req,
                "403 Forbidden",
                code,
                "refused by the proxy",
                seen.seq,
            );
            client.write_all(&a).await?;
        }
        Some(Fault::SlowAnswer(delay)) => {
            let answer = forward(upstream, &req).await?;
            tokio::time::sleep(delay).await;
            client.write_all(&closing(&answer)).await?;
        }
        Some(Fault::JsonOk(body)) => {
            client
                .write_all(&response("200 OK", "application/json", body))
                .await?;
        }
        Some(Fault::ResetBefore) => reset(client),
        Some(Fault::DropAfter) => match lag {
            // Lost on the way back, and applied only later, as IAM would.
            Some(delay) => {
                reset(client);
                tokio::time::sleep(delay).await;
                forward(upstream, &req).await?;
            }
            None => {
                forward(upstream, &req).await?;
                reset(client);
            }
        },
        Some(Fault::HangAfter) => {
            forward(upstream, &req).await?;
            // Hold the connection until the client gives up on it.
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await.unwrap_or(0) > 0 {}
        }
        None => match lag {
            Some(delay) => {
                client.write_all(&empty_success(&action, seen.seq)).await?;
                drop(client);
                tokio::time::sleep(delay).await;
                forward(upstream, &req).await?;
            }
            None => {
                let answer = forward(upstream, &req).await?;
                client.write_all(&closing(&answer)).await?;
            }
        },
    }
    Ok(())
}
