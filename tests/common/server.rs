//! A `sentiment serve` process on an ephemeral port with the tiny fixture model, and ways to talk to it.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, |_| {})
    }

    // The child is waited for in Drop (or at once if it never gets ready).
    #[allow(clippy::zombie_processes)]
    pub fn start_with(extra: &[&str], configure: impl FnOnce(&mut std::process::Command)) -> Self {
        let model = tiny_model_dir();
        Self::start_model(&["-m", model.to_str().unwrap()], extra, configure)
    }

    #[allow(clippy::zombie_processes)]
    pub fn start_model(
        model: &[&str],
        extra: &[&str],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        let mut command = sentiment_command(model);
        command.arg("serve");
        command
            .args(["--port", "0"])
            .args(extra)
            .env_remove("SENTIMENT_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("start sentiment serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                let status = child.wait();
                panic!("the server exited before it was ready: {status:?}");
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                let base = rest.split_whitespace().next().unwrap().to_string();
                // Keep draining stderr so the server never blocks on it.
                std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                return Self { child, base };
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        send(
            ureq::post(&self.url(path)).set("Content-Type", "application/json"),
            Some(body),
        )
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let response = match ureq::get(&self.url(path)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(err) => panic!("GET {path}: {err}"),
        };
        (response.status(), response.into_string().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a request; any status comes back with its JSON body.
pub fn send(request: ureq::Request, body: Option<&str>) -> (u16, Value) {
    let result = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(err) => panic!("request failed: {err}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn long_text() -> String {
    "the movie was fine but long ".repeat(200)
}

/// TEI's ErrorResponse: a message, and one of TEI's six error types.
pub fn assert_tei_error_type(answer: &Value) {
    let kinds = [
        "Unhealthy",
        "Backend",
        "Overloaded",
        "Validation",
        "Tokenizer",
        "Empty",
    ];
    assert!(answer["error"].is_string(), "{answer}");
    let kind = answer["error_type"].as_str().unwrap_or_default();
    assert!(kinds.contains(&kind), "{answer}");
}

/// Runs `clients` threads, each sending its own body once; returns each
/// thread's (status, answer) in thread order.
pub fn concurrently(server: &Server, bodies: Vec<String>) -> Vec<(u16, Value)> {
    let url = Arc::new(server.url("/predict"));
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let url = url.clone();
            std::thread::spawn(move || send(ureq::post(&url), Some(&body)))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The address `host:port` of a server's base URL.
pub fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection; true if it did (EOF or a
/// reset) before the guard of a minute ran out (a guard against a hang,
/// not a speed check).
pub fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
