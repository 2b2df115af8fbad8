//! `deltasync conformance [DIR]`: runs every fixture file of a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use deltasync::conformance::{self, Report};
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
        .map(|file| conformance::run_file_in_process(file))
        .collect();
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    let passed = reports.len() - failed;
    if args.json {
        println!("{}", as_json(&reports, passed, failed));
    } else {
        for report in &reports {
            match &report.outcome {
                Ok(()) => println!("pass {}", report.file),
                Err(failure) => println!("FAIL {}: {failure}", report.file),
            }
        }
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn as_json(reports: &[Report], passed: usize, failed: usize) -> Value {
    let fixtures: Vec<Value> = reports
        .iter()
        .map(|report| match &report.outcome {
            Ok(()) => json!({"file": report.file, "result": "pass"}),
            Err(failure) => json!({
                "file": report.file, "result": "fail",
                "step": failure.step, "message": failure.message,
            }),
        })
        .collect();
    json!({"fixtures": fixtures, "passed": passed, "failed": failed})
}
