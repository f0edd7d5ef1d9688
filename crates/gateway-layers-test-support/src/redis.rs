use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A private `redis-server` on a free loopback port, killed on drop.
///
/// ```no_run
/// let redis = gateway_layers_test_support::RedisServer::start();
/// println!("{}", redis.url()); // redis://127.0.0.1:PORT/
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

const INSTALL_HINT: &str = "redis-server was not found on PATH. The Redis backend tests need a real \
     redis-server: install it with `apt-get install redis-server` (Debian/Ubuntu), \
     `dnf install redis` (Fedora) or `brew install redis` (macOS). `bash .ci/run` installs it.";

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing or does not start: these tests never skip.
    pub fn start() -> Self {
        let binary_ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(binary_ok, "{INSTALL_HINT}");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self { port, child: None };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                self.child = None;
                return Err(format!("exited with {status}: {stderr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err("no PONG within 10 s".to_owned())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether it answers `PING` now.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (simulates Redis going down). The port stays reserved for
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port (data is gone).
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        let mut last_error = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}: {last_error}",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_restarts() {
        let mut redis = RedisServer::start();
        assert!(redis.ping());
        redis.stop();
        assert!(!redis.ping());
        redis.restart();
        assert!(redis.ping());
        let port = redis.port();
        drop(redis);
        let probe = RedisServer { port, child: None };
        assert!(!probe.ping());
    }
}
