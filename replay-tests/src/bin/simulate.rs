//! Runs the deterministic simulation from the command line: many seeds for a soak, or one seed to
//! reproduce a failure (with `--verbose`, every deploy's history).
//!
//! ```sh
//! cargo run -p skald-replay-tests --release --bin simulate -- --seeds 100000
//! cargo run -p skald-replay-tests --release --bin simulate -- --seed 1234 --verbose
//! ```

use skald_engine::codec::decode;
use skald_engine::codec::StoredEvent;
use skald_replay_tests::sim;
use skald_replay_tests::sim::chaos::Mutation;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: simulate [--seeds N] [--first S] [--seed S] [--mutation skip-lock|skip-idempotency] [--verbose]";

struct Args {
    first: u64,
    seeds: u64,
    mutation: Option<Mutation>,
    verbose: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args { first: 0, seeds: sim::CI_SEEDS, mutation: None, verbose: false };
    let number = |value: Option<String>, flag: &str| -> Result<u64, String> {
        value.ok_or(format!("{flag} needs a value"))?.parse().map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seeds" => parsed.seeds = number(args.next(), "--seeds")?,
            "--first" => parsed.first = number(args.next(), "--first")?,
            "--seed" => {
                parsed.first = number(args.next(), "--seed")?;
                parsed.seeds = 1;
            }
            "--mutation" => {
                let name = args.next().ok_or("--mutation needs a value")?;
                parsed.mutation = Some(Mutation::parse(&name).ok_or(format!("unknown mutation {name}"))?);
            }
            "--verbose" => parsed.verbose = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

fn print_histories(histories: &BTreeMap<String, Vec<StoredEvent>>) {
    for (deploy, history) in histories {
        println!("deploy {deploy}");
        for stored in history {
            let line = decode(stored).map(|r| r.event.to_string()).unwrap_or_else(|e| format!("(undecodable: {e})"));
            println!("  {:>4} {} {line}", stored.seq, stored.at);
        }
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("{problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut steps = 0;
    let mut ends = BTreeMap::<String, u64>::new();
    let mut stale_seeds = Vec::new();
    for seed in args.first..args.first + args.seeds {
        match sim::run(seed, args.mutation) {
            Ok(report) => {
                steps += report.steps;
                if !report.stale_repeats.is_empty() {
                    stale_seeds.push(seed);
                }
                for (end, n) in &report.ends {
                    *ends.entry(end.clone()).or_default() += n;
                }
                if args.verbose {
                    println!("seed {seed}: {:?}\n  injected {:?}\n  ends {:?}", report.mix, report.injected, report.ends);
                    print_histories(&report.histories);
                }
            }
            Err(failure) => {
                if args.verbose {
                    print_histories(&failure.histories);
                    println!("the cloud's last calls:");
                    failure.calls.iter().for_each(|call| println!("  {call}"));
                }
                eprintln!("{failure}");
                return ExitCode::from(1);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seeds passed from {} in {secs:.1} s ({:.0} steps/s); ends: {ends:?}; stale workers acted in {} seeds {:?}",
        args.seeds,
        args.first,
        steps as f64 / secs.max(1e-9),
        stale_seeds.len(),
        &stale_seeds[..stale_seeds.len().min(10)]
    );
    ExitCode::SUCCESS
}
