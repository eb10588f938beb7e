//! A generated binary's `serve` as the tests see it: the process on a free
//! loopback port, its log, and a raw HTTP/1.1 client written on std's
//! `TcpStream` — requests whole, and server-sent event streams read event
//! by event with the time each arrived.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `binary serve --port 0 EXTRA...` and waits for it to listen.
    pub fn start(binary: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(binary)
            .args(["serve", "--port", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the generated binary runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("serve did not start listening:\n{}", log.lock().unwrap())
            });
        Server { child, port, log }
    }

    /// Everything the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has a line containing `text`; returns that line.
    pub fn wait_for_log(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no log line with {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        request(self.port, "POST", path, body.to_string().as_bytes())
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, b"")
    }

    /// POSTs `body` and reads the event stream to its end.
    pub fn stream(&self, path: &str, body: &Value) -> Stream {
        let mut stream = EventReader::open(self.port, path, body);
        let mut events = Vec::new();
        while let Some(event) = stream.next_event() {
            events.push(event);
        }
        Stream {
            status: stream.status,
            events,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of "serving NAME on http://127.0.0.1:PORT ...".
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("serving ")?.split("http://").nth(1)?;
    let address = rest.split_whitespace().next()?;
    address.rsplit(':').next()?.parse().ok()
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: the body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a new connection and reads the whole response.
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Response {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write_request(&mut socket, method, path, body);
    let mut reader = BufReader::new(socket);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).expect("read the body");
    }
    Response {
        status,
        headers,
        body,
    }
}

pub fn write_request(socket: &mut TcpStream, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).expect("send the head");
    // A server may answer (413) before reading all of a large body and close.
    let _ = socket.write_all(body);
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("a header line");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    (status, headers)
}

/// One chunk of a chunked body; `None` at the last (empty) chunk or the end.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One server-sent event: its data (JSON, or `[DONE]`) and when it arrived.
#[derive(Clone, Debug)]
pub struct Event {
    pub data: String,
    pub at: Instant,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }

    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }
}

pub struct Stream {
    pub status: u16,
    pub events: Vec<Event>,
}

impl Stream {
    /// The text of the stream's chunks (chat deltas or completion text), in order.
    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter(|e| !e.is_done())
            .filter_map(|e| chunk_text(&e.json()))
            .collect()
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.events.iter().filter(|e| !e.is_done()).find_map(|e| {
            e.json()["choices"][0]["finish_reason"]
                .as_str()
                .map(String::from)
        })
    }
}

/// The text a chunk carries.
pub fn chunk_text(chunk: &Value) -> Option<String> {
    let choice = &chunk["choices"][0];
    choice["delta"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .map(String::from)
}

/// An event stream being read as it arrives.
pub struct EventReader {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pending: String,
    ended: bool,
}

impl EventReader {
    pub fn open(port: u16, path: &str, body: &Value) -> EventReader {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write_request(&mut socket, "POST", path, body.to_string().as_bytes());
        let mut reader = BufReader::new(socket);
        let (status, headers) = read_head(&mut reader);
        let is_stream = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v == "text/event-stream");
        EventReader {
            reader,
            status,
            pending: String::new(),
            ended: !is_stream,
        }
    }

    /// The next event, or `None` at the end of the body.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let raw: String = self.pending.drain(..end + 2).collect();
                let data = raw
                    .trim_end()
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {raw:?}"));
                return Some(Event {
                    data: data.to_string(),
                    at: Instant::now(),
                });
            }
            if self.ended {
                return None;
            }
            match read_chunk(&mut self.reader) {
                Some(chunk) => self.pending.push_str(
                    std::str::from_utf8(&chunk)
                        .expect("the server cuts events between characters, never inside one"),
                ),
                None => self.ended = true,
            }
        }
    }

    /// Closes the connection, as a client that leaves mid-stream does.
    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}
