//! The end-to-end harness: one isolated skald (table, queue, provisioned world, a running
//! `skald worker` process) against the local AWS API, and the `skald` CLI configured for it.
//! Shared by e2e.rs and infra.rs (which brings its own table and queue, made by the stack).
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use skald_engine::adapters::aws::AwsCloud;
use skald_engine::adapters::dynamodb::create_table;
use skald_engine::adapters::sqs::{create_queue_with_dlq, SqsQueue};
use skald_engine::message::Message;
use skald_engine::ports::{Cloud, Queue};
use skald_engine::testing::{example_release_for, moto};
use skald_engine::workflow::release::Strategy;
use skald_engine::workflow::resources::Query;
use skald_engine::workflow::{Release, Timestamp};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The wall-clock bound on any one wait in these tests.
pub const WAIT_MAX: Duration = Duration::from_secs(180);

/// One isolated skald: table, queue, provisioned world, and a running worker process.
pub struct Skald {
    pub table: String,
    pub queue_url: String,
    pub release: Release,
    pub dir: PathBuf,
    pub worker: Child,
}

impl Drop for Skald {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
    }
}

impl Skald {
    /// A skald with its own table and queue (a 10 s visibility timeout, 5 receives).
    pub async fn start(label: &str) -> Skald {
        let config = moto::aws_config().await;
        let table = moto::unique_name(label);
        create_table(&aws_sdk_dynamodb::Client::new(&config), &table).await.unwrap();
        let (queue_url, _) = create_queue_with_dlq(&aws_sdk_sqs::Client::new(&config), &moto::unique_name(label), 10, 5).await.unwrap();
        Skald::start_on(label, table, queue_url).await
    }

    /// A skald on an existing table and queue.
    pub async fn start_on(label: &str, table: String, queue_url: String) -> Skald {
        let config = moto::aws_config().await;
        let mut release = example_release_for(label);
        release.timeout = Some(20);
        for service in release.services.values_mut() {
            service.autoscaling.strategy = Some(Strategy::AllAtOnce);
        }
        AwsCloud::new(&config).provision_example(&release).await.unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&table);
        std::fs::create_dir_all(&dir).unwrap();
        let mut skald = Skald { table, queue_url, release, dir, worker: Command::new("true").spawn().unwrap() };
        skald.worker = skald.command(&["worker", "--sweep-secs", "5"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        skald
    }

    /// `skald ARGS` configured for this test's table, queue and emulator.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skald"));
        command
            .args(args)
            .env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", moto::REGION)
            .env("SKALD_TABLE", &self.table)
            .env("SKALD_QUEUE_URL", &self.queue_url);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Writes `release` as a release file and returns its path.
    pub fn release_file(&self, release: &Release, name: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(release).unwrap()).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn status(&self) -> Value {
        let out = self.run(&["status", &self.release.project_name, &self.release.config_name, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn history(&self) -> Vec<Value> {
        let out = self.run(&["history", &self.release.project_name, &self.release.config_name, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    }

    /// Polls `history` until the deploy `id` has ended; returns its summary.
    pub fn wait_for_end(&self, id: &str) -> Value {
        let started = Instant::now();
        while started.elapsed() < WAIT_MAX {
            if let Some(row) = self.history().into_iter().find(|r| r["release_id"] == id && !r["end"].is_null()) {
                return row;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("deploy {id} did not end within {} s", WAIT_MAX.as_secs());
    }

    pub async fn asg_names(&self) -> Vec<String> {
        let cloud = AwsCloud::new(&moto::aws_config().await);
        cloud.lookup(&Query::for_release(&self.release)).await.unwrap().asgs.into_iter().map(|a| a.name).collect()
    }

    /// Sends a DeployRequested straight to the queue, as a producer other than the CLI would.
    pub async fn send_raw(&self, release_id: &str, created_at: Timestamp) {
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&moto::aws_config().await), &self.queue_url);
        let message = Message::DeployRequested { release: Box::new(self.release.clone()), release_id: release_id.into(), created_at };
        queue.send(&message, 0).await.unwrap();
    }
}

pub fn deploy(skald: &Skald, file: &str, wait: bool) -> (Output, String) {
    let args: Vec<&str> = if wait { vec!["deploy", file, "--wait"] } else { vec!["deploy", file, "--json"] };
    let out = skald.run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

pub fn sent_id(stdout: &str) -> String {
    let sent: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    sent["release_id"].as_str().unwrap().to_string()
}
