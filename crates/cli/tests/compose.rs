//! `docker-compose.yml` cannot silently rot: this test parses it and runs every service's command
//! natively (no Docker engine here) with the same environment, then checks the whole system end to
//! end: playlist served, generator markers appear, POST works with the token, the example detector
//! works, and SIGTERM shuts the processes down cleanly.
//!
//! Container-only values are mapped to this machine: the `redis` host to 127.0.0.1 and a free
//! port, the `/data` volume to a temp dir, the image's frontend dir to `frontend/dist`, and the
//! published port 5000 to a free port (the test checks the mapping says 5000 first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlsmark_testkit::{free_port, http, require_program, wait_for_port};
use yaml_rust2::{Yaml, YamlLoader};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// Compose's `${VAR:-default}` interpolation, from the defaults (the test's environment is not
/// consulted, so the result does not depend on who runs it).
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unterminated ${") + i;
        let inner = &rest[i + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn env_of(svc: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(h) = svc["environment"].as_hash() {
        for (k, v) in h {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("unsupported env value {other:?}"),
            };
            env.insert(k.as_str().unwrap().to_owned(), interpolate(&v));
        }
    }
    env
}

struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// SIGTERM, then the exit status within `timeout` (SIGKILL after).
    fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(resp: &http::Response) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.text()))
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn compose_file_has_the_services_users_expect() {
    let c = compose();
    let services = &c["services"];
    for name in ["redis", "generator", "api"] {
        let s = &services[name];
        assert!(!s.is_badvalue(), "service {name} missing");
        assert!(
            !s["healthcheck"]["test"].is_badvalue(),
            "{name} needs a healthcheck"
        );
        assert!(
            s["restart"].as_str().is_some(),
            "{name} needs a restart policy"
        );
        assert!(
            !s["command"].is_badvalue(),
            "{name} needs an explicit command"
        );
    }
    let redis_cmd = strings(&services["redis"]["command"]).join(" ");
    assert!(
        redis_cmd.contains("--appendonly yes"),
        "redis must persist: {redis_cmd}"
    );
    assert_eq!(strings(&services["api"]["ports"]), ["5000:5000"]);
    assert_eq!(env_of(&services["api"])["HLSMARK_LISTEN"], "0.0.0.0:5000");
    for name in ["redis-data", "segments"] {
        assert!(
            c["volumes"]
                .as_hash()
                .unwrap()
                .contains_key(&Yaml::String(name.into())),
            "volume {name}"
        );
    }
    // Every setting of the hlsmark services is an HLSMARK_ variable (or RUST_LOG).
    for name in ["generator", "api"] {
        for k in env_of(&services[name]).keys() {
            assert!(
                k.starts_with("HLSMARK_") || k == "RUST_LOG",
                "{name}: unexpected env {k}"
            );
        }
    }
    assert!(
        repo_root().join("Dockerfile").is_file(),
        "compose builds from the Dockerfile"
    );
}

#[test]
fn compose_services_run_natively_end_to_end() {
    require_program("redis-server");
    require_program("ffmpeg");
    let c = compose();
    let services = &c["services"];
    let tmp = tempfile::tempdir().unwrap();
    let redis_dir = tmp.path().join("redis-data");
    let data_dir = tmp.path().join("segments");
    std::fs::create_dir_all(&redis_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    let redis_port = free_port();
    let api_port = free_port();

    // redis: its own command, with the volume and port mapped.
    let mut cmd = strings(&services["redis"]["command"]);
    assert_eq!(cmd[0], "redis-server");
    for i in 1..cmd.len() {
        match cmd[i - 1].as_str() {
            "--dir" => cmd[i] = redis_dir.to_string_lossy().into_owned(),
            "--port" => cmd[i] = redis_port.to_string(),
            _ => {}
        }
    }
    let redis = Proc {
        name: "redis",
        child: Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    };
    assert!(
        wait_for_port(redis_port, Duration::from_secs(10)),
        "redis did not start"
    );

    let frontend = repo_root().join("frontend/dist");
    let map_env = |env: BTreeMap<String, String>| -> BTreeMap<String, String> {
        env.into_iter()
            .map(|(k, v)| {
                let v = v
                    .replace(
                        "redis://redis:6379",
                        &format!("redis://127.0.0.1:{redis_port}"),
                    )
                    .replace("0.0.0.0:5000", &format!("127.0.0.1:{api_port}"))
                    .replace("/usr/share/hlsmark/frontend", &frontend.to_string_lossy());
                let v = if v == "/data" {
                    data_dir.to_string_lossy().into_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect()
    };
    let spawn = |name: &'static str| -> Proc {
        let svc = &services[name];
        let cmd = strings(&svc["command"]);
        assert_eq!(cmd[0], "hlsmark");
        let mut c = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
        c.args(&cmd[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        c.envs(map_env(env_of(svc))).current_dir(tmp.path());
        Proc {
            name,
            child: c.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")),
        }
    };
    let mut generator = spawn("generator");
    let mut api = spawn("api");
    assert!(
        wait_for_port(api_port, Duration::from_secs(20)),
        "api did not listen"
    );
    let token = env_of(&services["api"])["HLSMARK_TOKEN"].clone();
    assert!(!token.is_empty(), "the compose file gives a default token");

    // Healthchecks' targets answer.
    assert_eq!(http::get(api_port, "/readyz").unwrap().status, 200);

    // The live playlist fills with segments.
    let playlist = wait_until(
        "a live playlist with 2 segments",
        Duration::from_secs(60),
        || {
            let r = http::get(api_port, "/hls/live/index.m3u8").ok()?;
            let text = r.text();
            (r.status == 200 && text.matches("#EXTINF").count() >= 2).then_some(text)
        },
    );
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME"), "{playlist}");
    let seg = playlist
        .lines()
        .find(|l| l.contains(".m4s"))
        .expect("a segment line")
        .to_owned();
    let seg_url = if seg.starts_with('/') {
        seg.clone()
    } else {
        format!("/hls/live/{seg}")
    };
    let r = http::get(api_port, &seg_url).unwrap();
    assert_eq!(r.status, 200, "segment {seg_url}");
    assert!(!r.body.is_empty());

    // Generator events become markers (events every 5 s on average in the compose file).
    let first = wait_until("a generator marker", Duration::from_secs(90), || {
        let v = json(&http::get(api_port, "/markers?stream=live").ok()?);
        v["markers"]
            .as_array()?
            .iter()
            .find(|m| m["kind"] == "event")
            .cloned()
    });
    assert!(
        first["hls"].as_f64().is_some() && first["utc"].as_str().is_some(),
        "{first}"
    );

    // POST with the compose token works; without it is refused.
    let body = br#"{"label":"compose check","hls":1.0}"#;
    let auth = format!("Bearer {token}");
    let r = http::request(
        "POST",
        api_port,
        "/markers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body,
    )
    .unwrap();
    assert!(
        r.status == 201 || r.status == 200,
        "POST: {} {}",
        r.status,
        r.text()
    );
    let r = http::request(
        "POST",
        api_port,
        "/markers",
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());

    // The example detector client posts and queries a range like an external service would.
    let out = Command::new("python3")
        .arg(repo_root().join("examples/detector.py"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{api_port}"),
            "--token",
            &token,
            "--label",
            "detector test",
        ])
        .output()
        .expect("python3 runs examples/detector.py");
    assert!(
        out.status.success(),
        "detector failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("detector test"), "{stdout}");

    // Graceful shutdown: both exit 0 on SIGTERM.
    for p in [&mut api, &mut generator] {
        let st = p.terminate(Duration::from_secs(15));
        assert!(
            matches!(st, Some(s) if s.success()),
            "{} did not exit cleanly on SIGTERM: {st:?}",
            p.name
        );
    }
    drop(redis);
}
