//! `zwctl completion bash|zsh|fish`: print a shell completion script.

use clap::{Args, ValueEnum};
use clap_complete::Shell;

pub const EXAMPLES: &str = "\
Examples:
  # bash, for this shell only
  source <(zwctl completion bash)

  # bash, for every user (needs the bash-completion package)
  zwctl completion bash > /etc/bash_completion.d/zwctl

  # zsh: into a directory on your $fpath, then start a new shell
  zwctl completion zsh > \"${fpath[1]}/_zwctl\"

  # fish
  zwctl completion fish > ~/.config/fish/completions/zwctl.fish";

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells zwctl ships completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// The completion script for `shell`; needs no enforcer.
pub fn run(args: &CompletionArgs) -> anyhow::Result<String> {
    let mut script = Vec::new();
    clap_complete::generate(
        Shell::from(args.shell),
        // Each command completes the -o formats it writes.
        &mut crate::cli::command(),
        "zwctl",
        &mut script,
    );
    String::from_utf8(script)
        .map_err(|_| anyhow::anyhow!("the {:?} completion script is not UTF-8", args.shell))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_commands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = run(&CompletionArgs { shell }).unwrap();
            for word in ["zwctl", "endpoints", "zones", "status", "socket", "timeout"] {
                assert!(script.contains(word), "{shell:?} completion lacks {word}");
            }
        }
    }
}
