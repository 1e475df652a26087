//! A real RTMP ingest for restream tests: nginx with `libnginx-mod-rtmp` (Debian's
//! `/usr/lib/nginx/modules/ngx_rtmp_module.so`) on its own free port and temp prefix, one
//! process (`master_process off`, `daemon off`) so a kill takes the listener with it, and a
//! restart on the same port. Application `live` accepts any stream key; any other application
//! is refused (nginx-rtmp closes the connection), like an ingest given a wrong URL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require_program, wait_for_port};

/// Where Debian's package puts the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running nginx-rtmp, killed when dropped.
#[derive(Debug)]
pub struct RtmpServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RtmpServer {
    /// Starts nginx-rtmp on a free port of 127.0.0.1 (application `live`).
    pub fn start() -> Self {
        require_program("nginx");
        assert!(
            Path::new(RTMP_MODULE).is_file(),
            "{RTMP_MODULE} is missing: `apt-get install libnginx-mod-rtmp`"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let mut s = Self {
            child: None,
            port: free_port(),
            dir,
        };
        s.spawn();
        s
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    fn spawn(&mut self) {
        let d = self.dir.path().display();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             daemon off;\nmaster_process off;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; }} }} }}\n",
            port = self.port
        );
        std::fs::write(self.conf(), conf).expect("write nginx.conf");
        let log = std::fs::File::create(self.dir.path().join("stderr.log")).expect("log file");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(self.dir.path())
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .arg("-c")
            .arg(self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "nginx-rtmp did not start on port {}: {}",
            self.port,
            self.log()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtmp://127.0.0.1:PORT/{app}/{key}`.
    pub fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.port)
    }

    /// nginx's error log (connections, publishes, refusals at `info`).
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default(),
        );
        s
    }

    /// SIGKILLs nginx (the ingest crashes: every connection is cut).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts nginx again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The codecs (`codec_type:codec_name`, e.g. `video:h264`, `audio:aac`) a player of `url` sees,
/// by a real ffprobe reading the live stream (bounded: `timeout` seconds). Empty when nothing
/// plays there.
pub fn probe_codecs(url: &str, timeout: Duration) -> Vec<String> {
    require_program("ffprobe");
    let out = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs().max(1)))
        .args([
            "ffprobe",
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "csv=p=0",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    let mut codecs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, kind) = l.trim().split_once(',')?;
            Some(format!("{kind}:{name}"))
        })
        .collect();
    codecs.sort();
    codecs
}
