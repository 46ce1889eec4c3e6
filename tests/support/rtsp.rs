//! A real RTSP server for the tests (`tests/support/rtsp_server.py`, GStreamer's
//! GstRtspServer from Debian's python3) serving a clip in real time, as a camera would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Debian's python3, which sees the GStreamer bindings.
pub const PYTHON: &str = "/usr/bin/python3";
/// What the server needs from Debian.
pub const PACKAGES: &str = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
                            gstreamer1.0-plugins-bad";
/// How long the server may take to start on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A child process killed (SIGKILL) and reaped on drop, so a failing test leaves nothing behind.
pub struct Proc {
    /// What it is, for messages.
    pub name: &'static str,
    /// The process.
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("killing {} (pid {})", self.name, self.child.id());
        }
        self.kill();
    }
}

/// Starts the RTSP server on `port` and waits for its "ready"; its stderr goes to `log`.
pub fn start_rtsp_server(port: u16, clip: &Path, log: &Path) -> Proc {
    let script = super::root().join("tests/support/rtsp_server.py");
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} not found: the RTSP test server needs Debian's python3 with GStreamer \
         (apt-get install {PACKAGES})"
    );
    let child = Command::new(PYTHON)
        .arg(&script)
        .args(["--port", &port.to_string(), "--path", "/cam", "--file"])
        .arg(clip)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {PYTHON} {}: {e}", script.display()));
    let mut server = Proc {
        name: "rtsp server",
        child,
    };
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = Instant::now() + READY_WITHIN;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.trim() == "ready" => break,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().ok();
                panic!(
                    "the RTSP server exited before it was ready ({status:?}):\n{}",
                    read(log)
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > until => {
                panic!(
                    "the RTSP server was not ready within {READY_WITHIN:?}:\n{}",
                    read(log)
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    assert!(
        super::wait_for_port(port, Duration::from_secs(10)),
        "the RTSP server said ready but nothing listens on {port}"
    );
    server
}

pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
