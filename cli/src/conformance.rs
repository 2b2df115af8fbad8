//! `deltasync conformance [DIR]`: runs every fixture file of a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use deltasync::conformance::{self, Outcome, Report};
use serde_json::{Value, json};

/// Options of `deltasync conformance`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConformanceArgs {
    /// The directory of fixture files (`*.json`).
    #[arg(default_value = "fixtures")]
    dir: PathBuf,
    /// Print the results as one JSON object instead of lines.
    #[arg(long)]
    json: bool,
    /// Run the fixtures over WebSocket against the server at this URL (ws://host:port)
    /// instead of in process. Fixtures that need control of the server are listed as not
    /// run. Start our server for it with `deltasync serve --test-clock 1000`.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

/// Runs the fixtures and prints one line per fixture and a summary; exit code 1 if any
/// failed, 2 if the directory cannot be read.
pub(crate) fn run(args: &ConformanceArgs) -> ExitCode {
    let files = match conformance::fixture_files(&args.dir) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.dir.display());
            return ExitCode::from(2);
        }
    };
    if files.is_empty() {
        eprintln!("error: no fixture files (*.json) in {}", args.dir.display());
        return ExitCode::from(2);
    }
    let reports: Vec<Report> = files
        .iter()
        .map(|file| match &args.url {
            Some(url) => conformance::run_file_over_wire(file, url),
            None => conformance::run_file_in_process(file),
        })
        .collect();
    let count = |pick: fn(&Outcome) -> bool| reports.iter().filter(|r| pick(&r.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Passed));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let not_run = count(|o| matches!(o, Outcome::NotRun(_)));
    if args.json {
        println!("{}", as_json(&reports, passed, failed, not_run));
    } else {
        for report in &reports {
            match &report.outcome {
                Outcome::Passed => println!("pass {}", report.file),
                Outcome::Failed(failure) => println!("FAIL {}: {failure}", report.file),
                Outcome::NotRun(reason) => println!("not run {}: {reason}", report.file),
            }
        }
        if not_run == 0 {
            println!("{passed} passed, {failed} failed");
        } else {
            println!("{passed} passed, {failed} failed, {not_run} skipped");
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn as_json(reports: &[Report], passed: usize, failed: usize, not_run: usize) -> Value {
    let fixtures: Vec<Value> = reports
        .iter()
        .map(|report| match &report.outcome {
            Outcome::Passed => json!({"file": report.file, "result": "pass"}),
            Outcome::Failed(failure) => json!({
                "file": report.file, "result": "fail",
                "step": failure.step, "message": failure.message,
            }),
            Outcome::NotRun(reason) => json!({
                "file": report.file, "result": "not run", "reason": reason,
            }),
        })
        .collect();
    json!({"fixtures": fixtures, "passed": passed, "failed": failed, "notRun": not_run})
}
