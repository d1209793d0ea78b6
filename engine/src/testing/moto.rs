//! Test support: a local AWS API for the adapters' tests, so that `cargo test` alone works on a
//! fresh machine that has `python3`.
//!
//! What it guarantees:
//! - With `SKALD_TEST_AWS_ENDPOINT` set, tests talk to that endpoint and nothing is started.
//! - Otherwise ONE moto server per test process is started, on a free loopback port, the first
//!   time [`endpoint`] or [`aws_config`] is called; later calls (from any thread) share it.
//! - moto comes from a venv under the target directory (`$CARGO_TARGET_DIR/moto-venv`, or the
//!   workspace's `target/moto-venv`), with a pinned version ([`MOTO_VERSION`]). When the venv is
//!   missing or unfinished it is made with `python3 -m venv` and `pip install`, under an exclusive
//!   file lock, so test binaries running in parallel install it once; a marker file written last
//!   says the install completed.
//! - Every wait is bounded: the install ([`INSTALL_TIMEOUT`]), moto's readiness, polled on
//!   `GET /moto-api/` ([`READY_TIMEOUT`]).
//! - moto never outlives the test process: it runs under a small python watchdog that polls
//!   its parent (the test process) and stops moto once the parent is gone.
//! - moto runs with test-only additions (`moto_extensions.py`, [`EXTENSIONS`]) for the EC2 calls
//!   skald makes that moto lacks: CreatePlacementGroup and DescribePlacementGroups. They behave
//!   as EC2 documents (duplicates and unknown names answer EC2's error codes); nothing else of
//!   moto is changed. With `SKALD_TEST_AWS_ENDPOINT` they are the endpoint's business.
//!
//! What it deliberately does not do:
//! - Reset moto between tests: tests share one server, so each uses its own table and queue
//!   names ([`unique_name`]).
//! - Run asynchronously: starting moto blocks the calling thread (seconds, or minutes for the
//!   first install). That is fine in tests and nowhere else.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The moto the tests run against (its facts are in the design notes).
pub const MOTO_VERSION: &str = "5.2.5";
/// An AWS API endpoint to use instead of starting moto, e.g. `http://127.0.0.1:5000`.
pub const ENDPOINT_ENV: &str = "SKALD_TEST_AWS_ENDPOINT";
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The region the tests use; moto accepts any credentials (account 123456789012).
pub const REGION: &str = "us-east-1";

/// Stops moto when the process that started this watchdog (argv[1]) is gone: the parent pid is
/// polled twice a second, and a changed `getppid()` means the parent died and we were re-parented
/// (which also guards against the pid being reused).
const WATCHDOG: &str = r#"
import os, subprocess, sys, time
parent, python, extensions, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
moto = subprocess.Popen([python, "-c", extensions, "-H", "127.0.0.1", "-p", port],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def parent_alive():
    if os.getppid() != parent:
        return False
    try:
        os.kill(parent, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
while moto.poll() is None and parent_alive():
    time.sleep(0.5)
if moto.poll() is None:
    moto.terminate()
    try:
        moto.wait(5)
    except subprocess.TimeoutExpired:
        moto.kill()
"#;

/// moto's server with the test-only EC2 additions (placement groups), as a `python -c` program
/// taking `moto_server`'s arguments.
pub const EXTENSIONS: &str = include_str!("moto_extensions.py");

/// The endpoint of the local AWS API, starting moto the first time. Panics with the reason when
/// no endpoint can be had: a test cannot run without one.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    let endpoint = ENDPOINT.get_or_init(|| match std::env::var(ENDPOINT_ENV) {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().trim_end_matches('/').to_string()),
        _ => start_moto(),
    });
    match endpoint {
        Ok(url) => url.clone(),
        Err(why) => panic!("no local AWS API for the tests: {why} (or set {ENDPOINT_ENV} to a running one)"),
    }
}

/// AWS configuration for the local API: its endpoint, region us-east-1 and static test
/// credentials, with nothing taken from the environment.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .empty_test_environment()
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .test_credentials()
        .load()
        .await
}

/// A name no other test (of this process or another sharing the endpoint) uses: `skald-<label>-`
/// followed by the process id, the start time and a counter. Valid for tables and queues (letters,
/// digits and `-`; at most 64 characters, leaving room for suffixes such as `-dlq`).
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STARTED: OnceLock<u128> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() % 1_000_000_000).unwrap_or(0)
    });
    let label: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(24).collect();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("skald-{label}-{}-{started}-{n}", std::process::id())
}

/// The workspace's target directory: `CARGO_TARGET_DIR` (cargo passes it on to tests), else
/// `target/` beside the engine crate.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The python of the test venv, which holds moto and what moto brings along (PyYAML, and
/// cfn-lint, whose YAML loader reads CloudFormation's short-form tags such as `!Ref`). Installs
/// the venv the first time, as [`endpoint`] does. Panics with the reason when it cannot.
pub fn python() -> PathBuf {
    let venv = target_dir().join("moto-venv");
    match ensure_installed(&venv) {
        Ok(_) => venv.join("bin/python"),
        Err(why) => panic!("no python venv for the tests: {why}"),
    }
}

fn start_moto() -> Result<String, String> {
    let venv = target_dir().join("moto-venv");
    ensure_installed(&venv)?;
    let python = venv.join("bin/python");
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("finding a free port: {e}"))?.port();
    let mut watchdog = Command::new(&python)
        .arg("-c")
        .arg(WATCHDOG)
        .arg(std::process::id().to_string())
        .arg(&python)
        .arg(EXTENSIONS)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", python.display()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if answers(port) {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if let Ok(Some(status)) = watchdog.try_wait() {
            let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testing/moto_extensions.py");
            return Err(format!(
                "moto exited ({status}) before answering; try `{} {} -H 127.0.0.1 -p {port}`",
                python.display(),
                program.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watchdog stays: it stops moto when this (failing) test process ends.
    Err(format!("moto did not answer on port {port} within {} s", READY_TIMEOUT.as_secs()))
}

/// Whether moto answers `GET /moto-api/` with HTTP 200.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Makes sure `venv` holds moto, installing it if not; returns the path of `moto_server`.
fn ensure_installed(venv: &Path) -> Result<PathBuf, String> {
    let server = venv.join("bin/moto_server");
    let marker = venv.join(format!(".skald-moto-{MOTO_VERSION}"));
    if marker.exists() && server.exists() {
        return Ok(server);
    }
    let parent = venv.parent().expect("the venv lives in the target directory");
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock_path = parent.join("moto-venv.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    // Held until `lock` drops at the end of this function; another process installing waits here.
    lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if marker.exists() && server.exists() {
        return Ok(server);
    }
    if !venv.join("bin/python").exists() {
        run_bounded(Command::new("python3").arg("-m").arg("venv").arg(venv), "python3 -m venv")?;
    }
    let requirement = format!("moto[server]=={MOTO_VERSION}");
    run_bounded(
        Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &requirement]),
        &format!("pip install '{requirement}'"),
    )?;
    if !server.exists() {
        return Err(format!("pip installed {requirement} but {} is missing", server.display()));
    }
    std::fs::write(&marker, format!("{requirement}\n")).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(server)
}

/// Runs a command to completion within [`INSTALL_TIMEOUT`], killing it past that.
fn run_bounded(command: &mut Command, what: &str) -> Result<(), String> {
    let mut child: Child = command.stdin(Stdio::null()).stdout(Stdio::null()).spawn().map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{what} failed ({status})")),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} took over {} s", INSTALL_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
