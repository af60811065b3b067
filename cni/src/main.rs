//! `zonewarden`: the CNI plugin binary. Everything but reading the process's
//! environment and stdin and writing stdout lives in the library.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let vars = std::env::vars().collect();
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        // A runtime always writes the config; a read error leaves it empty and is reported as a decode error.
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let outcome = zonewarden_cni::plugin::run(&vars, &stdin);
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
