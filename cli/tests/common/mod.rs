//! The built `remediator` binary, run from cli/ as the tests run it.

#![allow(dead_code)]

use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run the binary from cli/, so fixture paths (and the paths it prints) are relative.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_remediator"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the remediator binary runs");
    let r = Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    eprintln!(
        "$ remediator {}\n--- exit {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        r.code,
        r.stdout,
        r.stderr
    );
    r
}

/// `remediator lint --rules rules --unleash-url url --token-env var` with `env`.
pub fn lint(rules: &str, url: &str, var: &str, env: &[(&str, &str)]) -> Run {
    run(
        &[
            "lint",
            "--rules",
            rules,
            "--unleash-url",
            url,
            "--token-env",
            var,
        ],
        env,
    )
}
