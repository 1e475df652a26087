//! TLS and HTTP/2 with real clients: a self-signed certificate made by openssl, curl over
//! HTTP/2 (ALPN `h2`) and HTTP/1.1, many requests multiplexed on one HTTP/2 connection, h2c with
//! prior knowledge on plain TCP, and the start-up errors of bad certificate and key files.

use std::path::{Path, PathBuf};
use std::process::Command;

use hlsmark_api::{Api, ApiConfig, ServeError, TlsFiles};

use crate::common::{TestServer, config};
use crate::files::file;

/// A self-signed certificate for localhost and 127.0.0.1 (P-256, one day) and its key.
fn self_signed(dir: &Path, name: &str) -> TlsFiles {
    hlsmark_testkit::require_program("openssl");
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsFiles { cert, key }
}

fn tls_server(dir: &Path) -> TestServer {
    let tls = self_signed(dir, "server");
    TestServer::start_configured(None, true, None, |c| c.tls = Some(tls))
}

/// curl's `-w` line and the body it saved.
fn curl(args: &[&str], url: &str, out: &Path) -> (String, Vec<u8>) {
    hlsmark_testkit::require_program("curl");
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(out)
        .args(["-w", "%{http_version} %{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    assert!(
        o.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        std::fs::read(out).unwrap_or_default(),
    )
}

#[test]
fn https_speaks_http2_and_http11_with_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tls_server(tmp.path());
    let base = format!("https://127.0.0.1:{}", s.addr.port());
    let out = tmp.path().join("body");
    let seg = file(&s, "e0-00000002.m4s");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (w, body) = curl(
            &["-k", flag],
            &format!("{base}/hls/live/e0-00000002.m4s"),
            &out,
        );
        assert_eq!(w, format!("{version} 200"), "{flag}");
        assert!(body == seg, "{flag}: {} bytes", body.len());
        let (w, body) = curl(
            &["-k", flag, "-r", "10-19"],
            &format!("{base}/hls/live/e0-00000002.m4s"),
            &out,
        );
        assert_eq!(w, format!("{version} 206"), "{flag}");
        assert_eq!(body, &seg[10..20]);
        let (w, body) = curl(&["-k", flag], &format!("{base}/hls/live/index.m3u8"), &out);
        assert_eq!(w, format!("{version} 200"));
        assert!(body.starts_with(b"#EXTM3U"));
        let (w, body) = curl(
            &["-k", flag],
            &format!("{base}/hls/live/e0-99999999.m4s"),
            &out,
        );
        assert_eq!(w, format!("{version} 404"));
        assert!(String::from_utf8_lossy(&body).contains("segment_not_found"));
        // HEAD: the GET's headers, no body.
        let o = Command::new("curl")
            .args(["-sS", "-k", flag, "-I"])
            .arg(format!("{base}/hls/live/e0-00000002.m4s"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-length: {}", seg.len()))
                && head.contains("cache-control: public, max-age=31536000, immutable"),
            "{flag}: {head}"
        );
    }
    // A client that insists on the certificate being trusted is refused (self-signed).
    let o = Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("{base}/healthz"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn one_http2_connection_carries_many_concurrent_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tls_server(tmp.path());
    let names: Vec<String> = (0..6).map(|i| format!("e0-{i:08}.m4s")).collect();
    let sizes: Vec<usize> = names.iter().map(|n| file(&s, n).len()).collect();
    // 120 transfers, at most 60 at once; curl -Z waits for the first connection to learn it speaks
    // HTTP/2, then multiplexes every transfer on it.
    let mut cfg = String::new();
    for i in 0..120 {
        let n = &names[i % names.len()];
        cfg.push_str(&format!(
            "url = \"https://127.0.0.1:{}/hls/live/{n}\"\noutput = \"/dev/null\"\n",
            s.addr.port()
        ));
    }
    let list = tmp.path().join("urls.txt");
    std::fs::write(&list, cfg).unwrap();
    let o = Command::new("curl")
        .args(["-sS", "-k", "--http2", "-Z", "--parallel-max", "60"])
        .args([
            "-w",
            "%{http_version} %{http_code} %{num_connects} %{size_download}\\n",
        ])
        .arg("-K")
        .arg(&list)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 120, "{text}");
    let mut connects = 0;
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(&f[..2], ["2", "200"], "{l}");
        connects += f[2].parse::<u32>().unwrap();
        let size: usize = f[3].parse().unwrap();
        assert!(sizes.contains(&size), "{l}");
    }
    assert!(
        connects == 1,
        "{connects} connections for 120 multiplexed requests"
    );
}

#[test]
fn plain_tcp_also_takes_http2_with_prior_knowledge() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start();
    let out = tmp.path().join("body");
    let seg = file(&s, "e0-00000001.m4s");
    let url = format!(
        "http://127.0.0.1:{}/hls/live/e0-00000001.m4s",
        s.addr.port()
    );
    let (w, body) = curl(&["--http2-prior-knowledge"], &url, &out);
    assert_eq!(w, "2 200");
    assert!(body == seg);
    let (w, _) = curl(&[], &url, &out);
    assert_eq!(w, "1.1 200");
}

fn bind_error(data: &Path, tls: TlsFiles) -> String {
    let store = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(hlsmark_store::open(
            data.join("s.redb").to_str().unwrap(),
            "t",
        ))
        .unwrap();
    let mut cfg: ApiConfig = config(data, None);
    cfg.tls = Some(tls);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    match Api::from_listener(listener, cfg, store) {
        Err(e @ ServeError::Tls(_)) => {
            let line = format!("{:#}", anyhow_like(&e));
            assert!(!line.contains('\n'), "{line}");
            line
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// `{e:#}` as anyhow prints it: the error and its causes on one line.
fn anyhow_like(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn bad_certificate_and_key_files_are_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = self_signed(tmp.path(), "a");
    let b = self_signed(tmp.path(), "b");
    let missing = PathBuf::from("/nonexistent/cert.pem");
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: missing.clone(),
            key: a.key.clone(),
        },
    );
    assert!(
        e.contains("cannot read the TLS certificate file /nonexistent/cert.pem"),
        "{e}"
    );
    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: a.cert.clone(),
            key: missing,
        },
    );
    assert!(e.contains("cannot read the TLS key file"), "{e}");
    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: garbage.clone(),
            key: a.key.clone(),
        },
    );
    assert!(e.contains("holds no certificate"), "{e}");
    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: a.cert.clone(),
            key: garbage,
        },
    );
    assert!(e.contains("holds no private key"), "{e}");
    // The key of another certificate.
    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        },
    );
    assert!(e.contains("does not fit the certificate"), "{e}");
    // A certificate given as the key.
    let e = bind_error(
        tmp.path(),
        TlsFiles {
            cert: a.cert,
            key: a.key.with_file_name("a-cert.pem"),
        },
    );
    assert!(e.contains("holds no private key"), "{e}");
}
